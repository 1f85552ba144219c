"""The API fields the page's teaching views use: saliency, the network's static side, inspect's ranges and dense
layers, single-digit boxes. FastAPI's TestClient, no browser."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from digitlab.predict import load  # noqa: E402
from digitlab.serve.app import create_app  # noqa: E402
from drawings import png, seven, untrained  # noqa: E402

PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def client():
    app = create_app({"reader": load(), "lenet5": untrained("lenet5"), "mlp": untrained("mlp")})
    return TestClient(app, raise_server_exceptions=False)


def test_saliency_explains_the_answer_and_the_runner_up(client):
    body = client.post("/api/saliency", content=png(seven()), headers=PNG).json()
    assert body["method"] == "occlusion" and body["model"] == "reader"
    first, second = body["maps"]
    assert first["class"] == "7" and first["prob"] > second["prob"] and second["class"] != "not-digit"
    m = np.array(first["map"])
    assert m.shape == (28, 28) and first["scale"] == pytest.approx(np.abs(m).max(), abs=1e-4) and first["scale"] > 0.1
    x0, y0, x1, y1 = body["frame"]  # the model's 28x28 laid over the 280x280 drawing: around the ink, square
    assert x0 <= 61 and y0 <= 51 and x1 >= 219 and y1 >= 239 and abs((x1 - x0) - (y1 - y0)) < 1
    assert y1 - y0 < 2 * (240 - 50)  # a 20-pixel digit box in a 28-pixel frame: the frame is 1.4x the ink


def test_saliency_for_one_class_and_for_a_pixel_array(client):
    body = client.post("/api/saliency?target=9", content=png(seven()), headers=PNG).json()
    assert [m["class"] for m in body["maps"]] == ["9"]
    pixels = np.zeros((28, 28))
    pixels[5:23, 13:15] = 1
    body = client.post("/api/saliency?model=mlp", json={"pixels": pixels.tolist()}).json()
    assert len(body["maps"]) == 2 and body["frame"] is None


@pytest.mark.parametrize("url, status, fragment", [
    ("/api/saliency?target=12", 422, "unknown target class '12'"),
    ("/api/saliency?model=nope", 404, "unknown model"),
    ("/api/saliency?stride=0", 422, "stride"),
])
def test_saliency_user_errors(client, url, status, fragment):
    r = client.post(url, content=png(seven()), headers=PNG)
    assert r.status_code == status and fragment in r.json()["detail"]


def test_network_lists_kernels_and_receptive_fields(client):
    body = client.get("/api/network?model=lenet5&max_maps=3&inputs=2").json()
    first, second = body["layers"]
    assert first["name"] == "features.0" and first["field"] == {"size": 5.0, "jump": 1.0, "start": 0.0}
    assert second["field"] == {"size": 14.0, "jump": 2.0, "start": 4.5}
    assert len(second["kernels"]) == 3 and [len(k) for k in second["kernels"]] == [2, 2, 2]
    assert np.array(second["kernels"][0][0]["weights"]).shape == (5, 5)
    assert client.get("/api/network?model=nope").status_code == 404


def test_inspect_gives_map_ranges_and_dense_layers(client):
    body = client.post("/api/inspect?model=lenet5&max_maps=4", content=png(seven()), headers=PNG).json()
    layer = body["layers"][0]
    assert len(layer["ranges"]) == len(layer["maps"]) == 4 and all(lo <= hi for lo, hi in layer["ranges"])
    dense = body["dense"]
    assert [d["size"] for d in dense] == [120, 84, 10] and dense[-1]["output"] and not dense[0]["output"]
    assert {u for u, _ in dense[-1]["top"]} <= set(map(str, range(10)))
    assert all(v >= 0 for _, v in dense[0]["top"])  # hidden units after their ReLU


def test_a_single_digit_comes_with_its_box(client):
    digit = client.post("/api/predict", content=png(seven()), headers=PNG).json()["digits"][0]
    x0, y0, x1, y1 = digit["box"]
    assert 55 <= x0 <= 70 and 45 <= y0 <= 55 and 210 <= x1 <= 225 and 230 <= y1 <= 245


def test_openapi_documents_the_new_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert "application/json" in paths["/api/saliency"]["post"]["requestBody"]["content"]
    assert "422" in paths["/api/saliency"]["post"]["responses"] and "get" in paths["/api/network"]
