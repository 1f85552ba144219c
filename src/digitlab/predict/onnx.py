"""ONNX export (torch's dynamo-based exporter) and an onnxruntime session that knows its digitlab record."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import DigitlabError
from ..runs import atomic_write, load_model, resolve_checkpoint


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise DigitlabError(f"{module} is not installed; pip install 'digitlab[onnx]'") from None


def export_onnx(checkpoint: str | Path, out: str | Path | None = None) -> Path:
    """Export a checkpoint to ONNX with a dynamic batch dimension; the record goes into the model's metadata.
    Input 'images' is the normalised (N, C, H, W) float batch, output 'logits'."""
    onnx = _need("onnx")
    _need("onnxscript")
    path = resolve_checkpoint(checkpoint)
    model, record = load_model(path)
    out = Path(out) if out else path.with_suffix(".onnx")
    c, h, w = record["input_shape"]
    example = torch.zeros(2, c, h, w)
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    try:
        program = torch.onnx.export(model, (example,), dynamo=True, input_names=["images"], output_names=["logits"],
                                    dynamic_shapes=({0: batch},), verbose=False, optimize=True)
    except Exception as e:  # the exporter raises many types; the user needs the model name and the first line
        raise DigitlabError(f"ONNX export of '{record['model']['name']}' failed: {str(e).splitlines()[0]}") from None
    proto = program.model_proto
    onnx.helper.set_model_props(proto, {"digitlab": json.dumps(record)})
    atomic_write(out, lambda tmp: onnx.save_model(proto, tmp))
    return out


def open_session(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """onnxruntime session on CPU plus the digitlab record stored in the file."""
    ort = _need("onnxruntime")
    path = Path(path)
    if not path.is_file():
        raise DigitlabError(f"{path}: no such ONNX file")
    try:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()  # follows --threads / torch.set_num_threads, as torch does
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as e:  # InvalidProtobuf, Fail, ...: a corrupt or foreign file
        raise DigitlabError(f"{path}: not a loadable ONNX model ({str(e).splitlines()[0][:120]})") from None
    meta = session.get_modelmeta().custom_metadata_map
    if "digitlab" not in meta:
        raise DigitlabError(f"{path}: ONNX file without a digitlab record; export it with `digitlab export`")
    return session, json.loads(meta["digitlab"])
