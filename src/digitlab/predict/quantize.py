"""int8 ONNX models: ONNX Runtime static quantisation of the exported model, calibrated on the run's own training
images, so activations get scales from the data the model was trained on (not from random inputs)."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import load_dataset, normalize
from ..errors import DigitlabError
from ..runs import atomic_write, read_record, resolve_checkpoint
from .onnx import _need, export_onnx

CALIBRATION_IMAGES = 300  # MinMax ranges settle within a few hundred digits (1,000 moved the reader by <= 0.01 points)
CALIBRATION_BATCH = 50
# QDQ, not QOperator: for a conv max-pooled *before* its ReLU (lenet5, fastcnn's early layers) ORT 1.32's QOperator
# output drops the ReLU (MaxPool keeps the conv's uint8 range, negatives included): lenet5 fell from 98.5% to 68%.
# In QDQ the ReLU's range sits on the QuantizeLinear after the pool. Same speed (cnn, one run: 2,236 vs 2,247 images/s).
QUANT_FORMAT = "QDQ"


class _Batches:
    """ONNX Runtime's CalibrationDataReader protocol (it only asks for `get_next`) over one normalised array."""

    def __init__(self, images: np.ndarray, size: int = CALIBRATION_BATCH):
        self.chunks = iter([images[i:i + size] for i in range(0, len(images), size)])

    def get_next(self) -> dict[str, np.ndarray] | None:
        chunk = next(self.chunks, None)
        return None if chunk is None else {"images": chunk}


def calibration_images(record: dict[str, Any], count: int = CALIBRATION_IMAGES, data_root: str | Path | None = None,
                       seed: int = 0) -> np.ndarray:
    """`count` training images of the run's dataset (a fixed random draw), normalised with the run's mean and std
    exactly as `predict` will feed the model. Looked for where training looked: data_root, $DIGITLAB_DATA, cache."""
    if count < 1:
        raise DigitlabError("--calibration must be at least 1 image")
    dataset = record.get("dataset")
    if not dataset:
        raise DigitlabError("the checkpoint's record names no dataset to calibrate int8 on; retrain it with digitlab train")
    c, h, _ = record["input_shape"]
    try:
        train = load_dataset(dataset, root=data_root, val_split=0.0, image_size=h, channels=c).train
    except DigitlabError as e:
        raise DigitlabError(f"int8 calibration needs training images of {dataset}: {e}") from None
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:count]
    mean, std = torch.tensor(record["mean"]), torch.tensor(record["std"])
    return normalize(train.take(pick), mean, std).numpy()


def first_block(graph) -> list[str]:
    """The nodes from each conv that reads the input to the next conv: the first conv with its pool, norm and
    activation (once per member of an ensemble). They stay fp32. A first conv reads 1-3 channels, so its int8
    products are too short for the int8 kernels (fastcnn, one thread, batch 256: 3.1 ms in int8, 1.1 ms in fp32);
    keeping the conv alone in fp32 was slower still, as ONNX Runtime then runs its pool and norm between quantise and
    dequantise steps. A chain that branches, ends in its pool (cnn: conv, ReLU, pool) or has no second conv stays int8:
    such a pool's output leaves ONNX Runtime's blocked fp32 layout, and it runs in plain NCHW at 17 ms (cnn), more than
    the int8 conv saves."""
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    kept: list[str] = []
    for first in consumers.get(graph.input[0].name, []):
        if first.op_type != "Conv":
            continue
        chain = [first]
        while len(nexts := consumers.get(chain[-1].output[0], [])) == 1 and nexts[0].op_type != "Conv":
            chain.append(nexts[0])
        ends_at_conv = [n.op_type for n in consumers.get(chain[-1].output[0], [])] == ["Conv"]
        if ends_at_conv and chain[-1].op_type not in ("MaxPool", "AveragePool"):
            kept += [n.name for n in chain]
    return kept


def quantize_file(fp32: str | Path, out: str | Path, images: np.ndarray) -> list[str]:
    """Static int8 quantisation of an fp32 ONNX file: uint8 activations (scales from `images`, MinMax), int8
    weights per output channel in 7 bits (reduce_range): x86 CPUs without VNNI multiply uint8 by int8 with
    VPMADDUBSW, whose int16 sums saturate on 8-bit weights (lenet5: 99.1% of test digits agreed with fp32, 99.8%
    with 7 bits). The first conv block may stay fp32 (first_block; its node names are returned). Writes `out`
    without a digitlab record; `export_int8` adds it."""
    onnx = _need("onnx")
    quantization = _need("onnxruntime.quantization")
    with tempfile.TemporaryDirectory(prefix="digitlab-int8-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"  # shape inference + graph clean-up, as ORT's quantiser recommends
        quantization.quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        kept_fp32 = first_block(onnx.load_model(str(prepared)).graph)
        quantization.quantize_static(
            str(prepared), str(out), _Batches(images), quant_format=getattr(quantization.QuantFormat, QUANT_FORMAT),
            per_channel=True, reduce_range=True, activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8, calibrate_method=quantization.CalibrationMethod.MinMax,
            nodes_to_exclude=kept_fp32,
            extra_options={"QDQOpTypePerChannelSupportToAxis": {"BatchNormalization": 0}})  # its 1-D scale: axis 0
    return kept_fp32


def export_int8(checkpoint: str | Path, out: str | Path | None = None, calibration: int = CALIBRATION_IMAGES,
                data_root: str | Path | None = None) -> Path:
    """Export a checkpoint as an int8 ONNX file (default: beside it, best.int8.onnx) that `digitlab.load`,
    `predict` and `serve` take like the fp32 one; its digitlab record notes the quantisation and calibration."""
    onnx = _need("onnx")
    _need("onnxruntime")
    path = resolve_checkpoint(checkpoint)
    record = read_record(path)
    out = Path(out) if out else path.with_suffix(".int8.onnx")
    images = calibration_images(record, calibration, data_root)  # before the export: a missing dataset fails fast
    with tempfile.TemporaryDirectory(prefix="digitlab-int8-") as tmp:
        fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        export_onnx(path, fp32)
        try:
            kept_fp32 = quantize_file(fp32, int8, images)
        except Exception as e:  # the quantiser raises many types; the user needs the model name and the first line
            first = (str(e).splitlines() or [type(e).__name__])[0]
            raise DigitlabError(f"int8 quantisation of '{record['model']['name']}' failed: {first}") from None
        proto = onnx.load_model(str(int8))
    record["quantization"] = {"type": "int8", "method": "onnxruntime static", "format": QUANT_FORMAT,
                              "activations": "uint8 per tensor (MinMax)", "weights": "int8 per channel (7-bit range)",
                              "fp32": "the first conv block" if kept_fp32 else "nothing",
                              "calibration": {"dataset": record.get("dataset"), "images": len(images)}}
    onnx.helper.set_model_props(proto, {"digitlab": json.dumps(record)})
    atomic_write(out, lambda tmp: onnx.save_model(proto, tmp))
    return out
