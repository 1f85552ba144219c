"""Teach it (issue 16 item 4): corrections kept by the server, fine-tuning from a run (--init-from, --replay), and
serving a checkpoint that changes (--reload)."""
from __future__ import annotations

import base64
import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from conftest import labelled_images  # noqa: E402
from digitlab import cli  # noqa: E402
from digitlab.data import load_dataset  # noqa: E402
from digitlab.models import create_model  # noqa: E402
from digitlab.predict import load  # noqa: E402
from digitlab.runs import read_record, save_model  # noqa: E402
from digitlab.serve.app import create_app  # noqa: E402
from digitlab.serve.corrections import LARGE  # noqa: E402

DIGITS = [str(i) for i in range(10)]


def make_run(folder: Path, seed: int = 0, classes: list[str] = DIGITS, name: str = "lenet5") -> Path:
    """A run folder holding an untrained model with a real record (trained on 'mnist', digit preprocessing)."""
    torch.manual_seed(seed)
    model = create_model(name, num_classes=len(classes), in_chans=1, image_size=28)
    record = {"model": model.digitlab_config, "classes": classes, "input_shape": [1, 28, 28], "mean": [0.1307],
              "std": [0.3081], "dataset": "mnist", "preprocess": "digits"}
    save_model(folder / "best.safetensors", model, record)
    return folder


def png_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def a_seven() -> tuple[list[list[float]], str]:
    """A drawn 7 as the page sends it: the 28x28 it saw (ink = 1) and the larger canvas (black on white)."""
    pixels = np.zeros((28, 28))
    pixels[6:8, 8:20] = 1.0
    pixels[8:22, 17:19] = 0.5
    canvas = np.full((280, 280), 255)
    canvas[60:80, 80:200] = 0
    return pixels.tolist(), png_b64(canvas)


def files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture
def teach_client(tmp_path):
    app = create_app([make_run(tmp_path / "run")], corrections=tmp_path / "corrections", corrections_cap=3)
    return TestClient(app, raise_server_exceptions=False), tmp_path / "corrections"


def test_a_correction_is_saved_where_the_folder_loader_reads_it(teach_client):
    client, folder = teach_client
    assert client.get("/api/healthz").json()["corrections"] is True
    pixels, large = a_seven()
    body = client.post("/api/corrections", json={"label": 7, "pixels": pixels, "png": large}).json()
    assert body["count"] == 1 and body["saved"].startswith("7/") and body["saved"].endswith(".png")
    small = np.asarray(Image.open(folder / body["saved"]))
    assert small.dtype == np.uint8 and small.shape == (28, 28)
    assert small[7, 10] == 255 and small[10, 17] == 128 and small[0, 0] == 0  # ink = 255, as in MNIST
    big = Image.open(folder / LARGE / body["saved"])
    assert big.size == (280, 280)
    second = client.post("/api/corrections", json={"label": "3", "pixels": pixels}).json()  # the larger PNG is optional
    assert second["count"] == 2
    data = load_dataset(f"folder:{folder}", val_split=0.0, image_size=28, channels=1, classes=DIGITS)
    both = torch.cat([data.train.labels, data.test.labels]).sort().values.tolist()
    assert both == [3, 7] and data.classes == DIGITS  # the hidden .large folder is not a class
    images = torch.cat([data.train.images, data.test.images])[torch.cat([data.train.labels, data.test.labels]) == 7]
    assert (images[0, 0].numpy() == small).all()


def test_the_cap_refuses_more_and_keeps_what_is_there(teach_client):
    client, folder = teach_client
    pixels, _ = a_seven()
    for i in range(3):
        assert client.post("/api/corrections", json={"label": i, "pixels": pixels}).status_code == 200
    before = files(folder)
    r = client.post("/api/corrections", json={"label": 4, "pixels": pixels})
    assert r.status_code == 507 and "--corrections-cap" in r.json()["detail"]
    assert files(folder) == before


@pytest.mark.parametrize("payload, status, fragment", [
    ({"label": 10, "pixels": "ok"}, 422, "label"),
    ({"label": True, "pixels": "ok"}, 422, "label"),
    ({"label": "cat", "pixels": "ok"}, 422, "label"),
    ({"pixels": "ok"}, 422, "label"),
    ({"label": 1, "pixels": [[0.5] * 28] * 27}, 422, "28x28"),
    ({"label": 1, "pixels": [[2.0] * 28] * 28}, 422, "0 (paper) to 1 (ink)"),
    ({"label": 1, "pixels": [["a"] * 28] * 28}, 422, "numbers"),
    ({"label": 1, "pixels": "ok", "png": "%%%not base64%%%"}, 400, "base64"),
    ({"label": 1, "pixels": "ok", "png": base64.b64encode(b"GIF89a....").decode()}, 400, "PNG"),
    ({"label": 1, "pixels": "ok", "png": base64.b64encode(b"\x89PNG\r\n\x1a\n broken").decode()}, 400, "readable"),
    ({"label": 1, "pixels": "ok", "png": 5}, 422, "base64 string"),
    ([1, 2], 422, "label"),
])
def test_bad_corrections_are_refused_and_nothing_is_written(teach_client, payload, status, fragment):
    client, folder = teach_client
    if isinstance(payload, dict) and payload.get("pixels") == "ok":
        payload["pixels"] = a_seven()[0]
    r = client.post("/api/corrections", json=payload)
    assert r.status_code == status and fragment in r.json()["detail"], r.json()
    assert files(folder) == []


def test_malformed_json_and_corrections_off(tmp_path, teach_client):
    client, folder = teach_client
    r = client.post("/api/corrections", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["detail"] and files(folder) == []
    off = TestClient(create_app([make_run(tmp_path / "other")]), raise_server_exceptions=False)
    assert off.get("/healthz").json()["corrections"] is False
    r = off.post("/api/corrections", json={"label": 1, "pixels": a_seven()[0]})
    assert r.status_code == 404 and "--corrections DIR" in r.json()["detail"]


def test_serve_refuses_a_corrections_path_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("x")
    assert cli.main(["serve", "--corrections", str(tmp_path / "taken"), "--port", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--corrections" in err[0] and "existing file" in err[0]


# ---- fine-tuning ------------------------------------------------------------------------------------------------

def write_folder(folder: Path, per_class: int = 3, classes: int = 10) -> Path:
    """Images whose brightness encodes their label, as DIR/<label>/<i>.png (the corrections layout)."""
    images, labels = labelled_images(per_class * classes, classes=classes, seed=1)
    for i, (image, label) in enumerate(zip(images, labels)):
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / str(label) / f"{i}.png")
    return folder


def test_init_from_starts_from_the_source_weights(tmp_path, tiny_root):
    import digitlab

    source = make_run(tmp_path / "source", seed=3)
    folder = write_folder(tmp_path / "corrections")
    run = digitlab.train(init_from=str(source), dataset=f"folder:{folder}", data_root=str(tiny_root), replay=40, epochs=1,
                         lr=1e-9, augment="none", threads=1, out=str(tmp_path / "ft"), verbose=False)
    tuned, original = load_file(str(run.dir / "best.safetensors")), load_file(str(source / "best.safetensors"))
    assert all(torch.allclose(tuned[k], original[k], atol=1e-6) for k in original)  # lr 1e-9: the source's weights, kept
    val = load_dataset(f"folder:{folder}", val_split=0.1, seed=0, image_size=28, channels=1, classes=DIGITS).val
    assert run.history[0]["val_acc"] == pytest.approx(load(source).evaluate(val).accuracy)
    record = read_record(run.dir / "best.safetensors")
    assert record["init_from"]["path"] == str(source / "best.safetensors") and record["replay"] == 40
    assert record["classes"] == DIGITS and record["preprocess"] == "digits" and record["mean"] == [0.1307]
    assert "--init-from" in record["command"] and "--replay 40" in record["command"]


@pytest.mark.parametrize("extra, fragment", [
    (["--model", "mlp"], "--model mlp"),
    (["--image-size", "32"], "--image-size 32"),
    (["--reject", "0.2"], "--reject"),
])
def test_init_from_refuses_options_that_contradict_the_source(tmp_path, capsys, extra, fragment):
    source = make_run(tmp_path / "source")
    folder = write_folder(tmp_path / "corrections")
    assert cli.main(["train", "--init-from", str(source), "--dataset", f"folder:{folder}", "--threads", "1", *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("digitlab: error:") and fragment in err[0], err


def test_init_from_refuses_classes_the_source_lacks_and_replay_alone(tmp_path, capsys):
    source = make_run(tmp_path / "source")
    folder = write_folder(tmp_path / "corrections", classes=2)
    (folder / "cat").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(folder / "cat" / "c.png")
    assert cli.main(["train", "--init-from", str(source), "--dataset", f"folder:{folder}", "--threads", "1",
                     "--out", str(tmp_path / "ft")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cat" in err[0] and "not classes of the model" in err[0], err
    assert not (tmp_path / "ft").exists()
    assert cli.main(["train", "--replay", "10", "--dataset", f"folder:{folder}"]) == 2
    assert "--init-from" in capsys.readouterr().err
    assert cli.main(["train", "--init-from", str(tmp_path / "nowhere"), "--dataset", f"folder:{folder}"]) == 2
    assert "no such run folder" in capsys.readouterr().err


# ---- reload -----------------------------------------------------------------------------------------------------

def probs(client: TestClient) -> list[float]:
    pixels = np.zeros((28, 28))
    pixels[4:24, 12:16] = 1.0
    r = client.post("/api/predict", json={"pixels": pixels.tolist()})
    assert r.status_code == 200, r.text
    return list(r.json()["probs"].values())


def later(path: Path) -> None:
    """Move a file's mtime on, so a rewrite within the clock's resolution still counts as a change."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_reload_serves_the_new_checkpoint_and_never_a_broken_one(tmp_path):
    run = make_run(tmp_path / "run", seed=0)
    client = TestClient(create_app([run], reload=True, reload_interval=0), raise_server_exceptions=False)
    first = probs(client)
    checkpoint = run / "best.safetensors"
    good = checkpoint.read_bytes()
    checkpoint.write_bytes(good[: len(good) // 2])  # a copy still under way: not a model yet
    later(checkpoint)
    assert probs(client) == first
    make_run(tmp_path / "run", seed=1)  # training writes the next best checkpoint atomically
    later(checkpoint)
    second = probs(client)
    assert second != first
    expected = load(run).predict(torch.from_numpy(np.pad(np.ones((20, 4)), ((4, 4), (12, 12))).astype(np.float32))).probs[0]
    assert np.allclose(second, expected.tolist(), atol=1e-5)
    make_run(tmp_path / "run", seed=2, classes=DIGITS + ["not-digit"])  # other classes: keep serving the old model
    later(checkpoint)
    assert probs(client) == second


def test_without_reload_the_first_model_stays(tmp_path):
    run = make_run(tmp_path / "run", seed=0)
    client = TestClient(create_app([run]), raise_server_exceptions=False)
    first = probs(client)
    make_run(tmp_path / "run", seed=1)
    later(run / "best.safetensors")
    assert probs(client) == first
