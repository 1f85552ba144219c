"""The REST API: every endpoint, every error case (4xx JSON, never 5xx), and a fuzz run from the OpenAPI schema."""
from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from digitlab.models import create_model  # noqa: E402
from digitlab.predict import load  # noqa: E402
from digitlab.serve.app import INLINE_BODY, Batcher, create_app  # noqa: E402
from digitlab.runs import save_model  # noqa: E402


def make_checkpoint(folder: Path, name: str = "lenet5") -> Path:
    """An untrained model with a real record: the API's behaviour doesn't depend on the weights."""
    model = create_model(name, num_classes=10, in_chans=1, image_size=28)
    record = {"model": model.digitlab_config, "classes": [str(i) for i in range(10)], "input_shape": [1, 28, 28],
              "mean": [0.1307], "std": [0.3081], "dataset": "mnist", "preprocess": "digits"}
    path = folder / name / "best.safetensors"
    save_model(path, model, record)
    return path.parent


def png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array.astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def drawn_digit(size: int = 280) -> np.ndarray:
    """A '1' drawn in black on a white canvas, like the page sends."""
    img = np.full((size, size), 255, np.uint8)
    img[size // 5: 4 * size // 5, size // 2 - 10: size // 2 + 10] = 0
    return img


_TMP = tempfile.TemporaryDirectory()
MODELS = [make_checkpoint(Path(_TMP.name), "lenet5"), make_checkpoint(Path(_TMP.name), "mlp")]
APP = create_app(MODELS, max_body=2 * 1024 * 1024)


@pytest.fixture(scope="module")
def client():
    return TestClient(APP, raise_server_exceptions=False)


def test_health_models_docs_and_page(client):
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["models"] == 2 and health["pid"] > 0
    models = client.get("/api/models").json()
    assert [m["name"] for m in models] == ["lenet5", "mlp"] and models[0]["default"] is True
    assert models[0]["params"] == 61706 and models[0]["classes"] == [str(i) for i in range(10)]
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/api/predict", "/api/inspect", "/api/models", "/healthz"} <= set(paths)
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text
    assert "pointerdown" in client.get("/static/app.js").text


def check_prediction(body: dict, model: str = "lenet5") -> None:
    assert body["model"] == model and body["label"] in [str(i) for i in range(10)]
    assert abs(sum(body["probs"].values()) - 1) < 1e-3 and set(body["probs"]) == {str(i) for i in range(10)}
    seen = Image.open(io.BytesIO(__import__("base64").b64decode(body["preprocessed"])))
    assert seen.size == (28, 28)
    assert body["timing_ms"] >= 0


def test_predict_raw_multipart_and_json(client):
    image = png(drawn_digit())
    check_prediction(client.post("/api/predict", content=image, headers={"content-type": "image/png"}).json())
    check_prediction(client.post("/api/predict?model=mlp", files={"file": ("d.png", image, "image/png")}).json(), "mlp")
    pixels = np.zeros((28, 28))
    pixels[4:24, 13:15] = 255
    body = client.post("/api/predict", json={"pixels": pixels.tolist()}).json()
    check_prediction(body)
    seen = np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(body["preprocessed"]))))
    assert (seen == pixels).all()  # a 28x28 array is the model input as it is


def test_predict_multi_reads_each_digit(client):
    line = np.full((120, 400), 255, np.uint8)
    for x in (40, 170, 300):
        line[20:100, x:x + 12] = 0
    body = client.post("/api/predict?multi=true", content=png(line), headers={"content-type": "image/png"}).json()
    assert len(body["label"]) == 3 and len(body["digits"]) == 3
    xs = [d["box"][0] for d in body["digits"]]
    assert xs == sorted(xs) and abs(xs[0] - 40) <= 2


def test_inspect_returns_feature_maps_and_filters(client):
    body = client.post("/api/inspect?max_maps=4", content=png(drawn_digit()), headers={"content-type": "image/png"}).json()
    assert [layer["name"] for layer in body["layers"]] == ["features.0", "features.3"]
    assert body["layers"][0]["shape"] == [6, 28, 28] and len(body["layers"][0]["maps"]) == 4
    assert len(body["filters"]) == 4 and abs(sum(body["probs"].values()) - 1) < 1e-3


@pytest.mark.parametrize("request_args, status, fragment", [
    (dict(url="/api/predict?model=nope", content=b"x", headers={"content-type": "image/png"}), 404, "unknown model 'nope'"),
    (dict(url="/api/predict", content=b"hello", headers={"content-type": "text/plain"}), 415, "unsupported content-type"),
    (dict(url="/api/predict", content=b"not a png", headers={"content-type": "image/png"}), 422, "not an image"),
    (dict(url="/api/predict", content=b"", headers={"content-type": "image/png"}), 400, "empty body"),
    (dict(url="/api/predict", content=b"{", headers={"content-type": "application/json"}), 422, "pixels"),
    (dict(url="/api/predict", json={"pixels": [[1, 2], [3, 4]]}), 422, "28x28"),
    (dict(url="/api/predict", content=("{\"pixels\": [" + ",".join(["[" + ",".join(["NaN"] * 28) + "]"] * 28) + "]}").encode(),
          headers={"content-type": "application/json"}), 422, "finite"),  # Python's JSON reader accepts NaN
    (dict(url="/api/predict", json={"pixels": [[300] * 28] * 28}), 422, "0-255"),
    (dict(url="/api/predict", json={"wrong": 1}), 422, "pixels"),
    (dict(url="/api/predict?multi=true", json={"pixels": [[0] * 28] * 28}), 422, "multi needs an image"),
    (dict(url="/api/predict", content=png(np.full((50, 50), 255)), headers={"content-type": "image/png"}), 422, "no writing"),
    (dict(url="/api/predict", content=b"x" * (3 * 1024 * 1024), headers={"content-type": "image/png"}), 413, "limit"),
    (dict(url="/api/predict", files={"other": ("a.png", b"x", "image/png")}), 422, "field named 'file'"),
    (dict(url="/api/inspect?model=mlp", content=png(drawn_digit()), headers={"content-type": "image/png"}), 422, "no convolutional"),
    (dict(url="/api/inspect?max_maps=0", content=png(drawn_digit()), headers={"content-type": "image/png"}), 422, ""),
])
def test_bad_requests_get_a_4xx_json_error(client, request_args, status, fragment):
    response = client.post(**request_args)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert fragment in (detail if isinstance(detail, str) else str(detail))


def test_big_photo_is_read_off_the_event_loop(client):
    rng = np.random.default_rng(0)
    photo = np.clip(drawn_digit(900).astype(np.int16) + rng.integers(-20, 20, (900, 900)), 0, 255)  # grain: no compression
    data = png(photo)
    assert len(data) > INLINE_BODY
    body = client.post("/api/predict", content=data, headers={"content-type": "image/png"}).json()
    small = client.post("/api/predict", content=png(drawn_digit()), headers={"content-type": "image/png"}).json()
    seen = [np.asarray(Image.open(io.BytesIO(__import__("base64").b64decode(b["preprocessed"]))), np.float32) for b in (body, small)]
    assert np.abs(seen[0] - seen[1]).mean() < 10  # the same '1' under the grain (the model here is untrained)


def test_batcher_runs_concurrent_requests_as_one_forward_pass():
    import asyncio

    clf = load(MODELS[0])
    calls = []
    clf.model.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    images = [np.random.default_rng(k).random((n, 1, 28, 28), dtype=np.float32) for k, n in enumerate([1, 3, 1, 2])]
    alone = [clf.predict(x).probs for x in images]
    calls.clear()
    batcher = Batcher(clf)

    async def together():
        return await asyncio.gather(*(batcher.probs(x) for x in images))

    shared = asyncio.run(together())
    assert calls == [7]  # one forward pass for the four requests
    for a, b in zip(alone, shared):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-5)
    calls.clear()
    asyncio.run(together())
    assert calls == [7] and not batcher.pending


def test_huge_image_is_refused(client):
    buf = io.BytesIO()
    Image.new("1", (9000, 6000), 1).save(buf, "PNG")  # 54 MP that compresses to a few KB
    response = client.post("/api/predict", content=buf.getvalue(), headers={"content-type": "image/png"})
    assert response.status_code == 422 and "over the limit" in response.json()["detail"]


schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", APP)
SCHEMA.config.checks.update(included_check_names=["all"], max_response_time=10.0)
# A schema cannot say "an image with a digit in it": a well-formed blank PNG, or multi=true with a pixel array, is
# schema-valid and still answered 422 with the reason. Every other status a valid request may get stays the default.
SCHEMA.config.checks.positive_data_acceptance.expected_statuses = [*SCHEMA.config.checks.positive_data_acceptance.expected_statuses, "422"]
# Invalid data refused for its size (413, e.g. a pixel array far longer than the schema allows) is refused all the same.
SCHEMA.config.checks.negative_data_rejection.expected_statuses = [*SCHEMA.config.checks.negative_data_rejection.expected_statuses, "413"]


@SCHEMA.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_fuzz_api_meets_every_schemathesis_check(case):
    """Schemathesis generates requests from the OpenAPI schema (bodies, query strings, content types) and runs all
    its checks: no 5xx, every status and content type documented, responses match their schemas, invalid data
    refused, unsupported methods answered 405."""
    case.call_and_validate()


@pytest.mark.slow
def test_serve_workers_share_keepalive_connections_evenly():
    """`digitlab serve --workers 2`: four keep-alive connections land two per worker process (uvicorn's own workers
    accept greedily and can put them 3:1 or 4:0), and stopping the server stops its workers."""
    import http.client
    import json
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", str(MODELS[0]), "--port", str(port), "--workers", "2"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 90
        while True:
            try:
                probe = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                probe.request("GET", "/healthz")
                assert probe.getresponse().status == 200
                probe.close()
                break
            except OSError:
                assert server.poll() is None and time.time() < deadline, server.stderr.read() if server.poll() is not None else "timeout"
                time.sleep(0.3)
        time.sleep(0.3)  # the probe's close reaches the parent
        connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(4)]
        pids = []
        for _ in range(3):  # keep-alive: each connection stays with its worker
            for c in connections:
                c.request("GET", "/healthz")
                pids.append(json.loads(c.getresponse().read())["pid"])
        per_connection = pids[:4]
        assert pids == per_connection * 3
        assert sorted(per_connection.count(p) for p in set(per_connection)) == [2, 2]
        image = png(drawn_digit())
        connections[0].request("POST", "/api/predict", body=image, headers={"Content-Type": "image/png"})
        assert json.loads(connections[0].getresponse().read())["label"] in [str(i) for i in range(10)]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(20)
    time.sleep(1)
    for pid in set(per_connection):
        assert not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split()[2] == "Z", f"worker {pid} still running"
