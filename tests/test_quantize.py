"""int8 export: ONNX Runtime static quantisation calibrated on the run's training images, and its user errors."""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import digitlab
from conftest import make_idx_dataset
from digitlab.cli import main as cli_main
from digitlab.predict.onnx import export_onnx
from digitlab.predict.quantize import first_block
from digitlab.runs import save_model

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """`digitlab ARGS` in this process: exit code, stdout, stderr."""
    code = cli_main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digitlab: error:"), err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, Path]:
    """A lenet5 trained for a few seconds on the 200-image synthetic MNIST of conftest (brightness encodes the label),
    with its data root; int8 calibration reads that run's training images."""
    root = tmp_path_factory.mktemp("int8")
    make_idx_dataset(root / "data")
    digitlab.train(model="lenet5", dataset="mnist", data_root=str(root / "data"), epochs=6, lr=3e-3, batch_size=16,
                   threads=1, out=str(root / "run"), verbose=False)
    return root / "run", root / "data"


@pytest.fixture(scope="module")
def int8_file(tiny_run) -> Path:
    run, data = tiny_run
    code = cli_main(["export", str(run), "--quantize", "int8", "--data-root", str(data)])
    assert code == 0
    return run / "best.int8.onnx"


def test_int8_file_is_quantised_carries_the_record_and_agrees_with_fp32(tiny_run, int8_file):
    run, data = tiny_run
    proto = onnx.load(str(int8_file))
    ops = {node.op_type for node in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 4  # the second conv and the three linear layers
    first_conv = next(node for node in proto.graph.node if node.op_type == "Conv")  # the first block stays fp32
    assert {t.name: t.data_type for t in proto.graph.initializer}[first_conv.input[1]] == onnx.TensorProto.FLOAT
    int8 = digitlab.load(int8_file)
    fp32 = digitlab.load(run)
    quantization = int8.record["quantization"]
    assert quantization["type"] == "int8" and quantization["fp32"] == "the first conv block"
    assert quantization["calibration"] == {"dataset": "mnist", "images": 200}  # all 200: fewer than the default 300
    assert int8.classes == fp32.classes and int8.record["mean"] == fp32.record["mean"]
    test = digitlab.load_dataset("mnist", root=data, val_split=0).test
    noisy = np.clip(test.images.numpy() + np.random.default_rng(0).normal(0, 30, test.images.shape), 0, 255)
    images = torch.cat([test.images, torch.from_numpy(noisy.astype(np.uint8))])
    a, b = fp32.predict(images), int8.predict(images)
    assert (a.labels == b.labels).float().mean() >= 0.9
    assert (a.probs - b.probs).abs().max() < 0.2


@pytest.mark.parametrize("name, kept", [("fastcnn", ["Conv", "MaxPool", "BatchNormalization", "Relu"]),
                                         ("lenet5", ["Conv", "MaxPool", "Relu"]), ("cnn", []), ("mlp", []),
                                         ("ensemble", ["Conv", "MaxPool", "BatchNormalization", "Relu"] * 3)])
def test_the_first_conv_block_stays_fp32_unless_it_ends_in_its_pool(name, kept, tmp_path):
    model = digitlab.create_model(name)
    record = {"model": model.digitlab_config, "classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28],
              "mean": [0.13], "std": [0.31], "dataset": "mnist"}
    save_model(tmp_path / "m.safetensors", model, record)
    graph = onnx.load(str(export_onnx(tmp_path / "m.safetensors", tmp_path / "m.onnx"))).graph
    ops = {node.name: node.op_type for node in graph.node}
    assert [ops[n] for n in first_block(graph)] == kept


def test_predict_and_serve_take_the_int8_file(tiny_run, int8_file, tmp_path, capsys):
    photo = tmp_path / "digit.png"
    canvas = np.zeros((100, 100), np.uint8)
    canvas[20:80, 45:55] = 255
    Image.fromarray(canvas).save(photo)
    code, out, err = run_main(capsys, "predict", str(int8_file), str(photo), "--json")
    assert code == 0, err
    rows = json.loads(out)
    assert rows[0]["label"] in [str(i) for i in range(10)] and len(rows[0]["top_k"]) == 3
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from digitlab.serve.app import create_app

    client = TestClient(create_app([tiny_run[0], int8_file]))
    assert [m["name"] for m in client.get("/api/models").json()] == ["run", "run-int8"]
    buf = io.BytesIO()
    Image.fromarray(255 - canvas).save(buf, "PNG")
    body = client.post("/api/predict?model=run-int8", content=buf.getvalue(), headers={"content-type": "image/png"}).json()
    assert body["model"] == "run-int8" and body["label"] in [str(i) for i in range(10)]


def test_evaluate_scores_the_int8_and_fp32_onnx_files_as_they_serve(tiny_run, int8_file, tmp_path, capsys):
    run, data = tiny_run
    scores = {}
    for name, model in (("torch", run), ("int8", int8_file)):
        code, out, err = run_main(capsys, "evaluate", str(model), "--data-root", str(data), "--json", "--out", str(tmp_path / name))
        assert code == 0, err
        scores[name] = json.loads(out)
    test = digitlab.load_dataset("mnist", root=data, val_split=0).test
    served = (digitlab.load(int8_file).predict(test.images).labels == test.labels).double().mean().item()
    assert scores["int8"]["accuracy"] == pytest.approx(served, abs=1e-9)  # onnxruntime's answers, not torch's
    assert abs(scores["int8"]["accuracy"] - scores["torch"]["accuracy"]) <= 0.1
    assert scores["int8"]["n"] == len(test) and (tmp_path / "int8" / "confusion.png").is_file()


def test_export_user_errors_are_one_line(tiny_run, tmp_path, capsys, monkeypatch):
    run, data = tiny_run
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)  # conftest keeps the cache empty and downloads off
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_main(capsys, "export", str(run), "--quantize", "int8", "--data-root", str(empty))
    assert_one_line_error(code, err, "int8 calibration needs training images of mnist", "--data-root")
    code, _, err = run_main(capsys, "export", str(run), "--calibration", "100")
    assert_one_line_error(code, err, "--quantize int8")
    code, _, err = run_main(capsys, "export", str(run), "--quantize", "int8", "--calibration", "0", "--data-root", str(data))
    assert_one_line_error(code, err, "--calibration must be at least 1")
    code, _, err = run_main(capsys, "export", str(run), "--quantize", "int4")
    assert_one_line_error(code, err, "--quantize", "int4")
    code, _, err = run_main(capsys, "export", str(run), "--format", "tflite")
    assert_one_line_error(code, err, "--format", "tflite")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if it were not installed
    code, _, err = run_main(capsys, "export", str(run), "--quantize", "int8", "--data-root", str(data))
    assert_one_line_error(code, err, "onnxruntime is not installed")


@pytest.mark.slow
def test_int8_loses_at_most_a_tenth_of_a_point_on_mnist_test(mnist_model, real_root, tmp_path):
    """The goal on real data: a 2-epoch lenet5 (~98%) loses <= 0.1 points on the 10,000 MNIST test digits."""
    from digitlab.predict.onnx import export_onnx
    from digitlab.predict.quantize import export_int8

    test = digitlab.load_dataset("mnist", root=str(real_root), val_split=0).test
    fp32 = digitlab.load(export_onnx(mnist_model, tmp_path / "m.onnx")).predict(test.images).labels
    int8 = digitlab.load(export_int8(mnist_model, tmp_path / "m.int8.onnx", data_root=real_root)).predict(test.images).labels
    acc_fp32, acc_int8 = ((x == test.labels).float().mean().item() * 100 for x in (fp32, int8))
    assert acc_fp32 > 97
    assert acc_fp32 - acc_int8 <= 0.1, (acc_fp32, acc_int8)
