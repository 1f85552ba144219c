"""Serving under hostile or unlucky conditions: bad and busy ports, deeply nested JSON, slow and vanishing clients,
the uvicorn seam the worker processes depend on, and a bounded soak against a real server on 127.0.0.1."""
from __future__ import annotations

import asyncio
import http.client
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from digitlab.cli import main as cli_main  # noqa: E402
from digitlab.serve.app import ErrorDetail, create_app, json_depth  # noqa: E402
from digitlab.serve.server import handoff_protocol, listen, url, uvicorn_config  # noqa: E402
from test_serve import drawn_digit, make_checkpoint, png  # noqa: E402

_TMP = tempfile.TemporaryDirectory()
MODEL = make_checkpoint(Path(_TMP.name), "lenet5")
APP = create_app([MODEL])


@pytest.fixture(scope="module")
def client():
    return TestClient(APP, raise_server_exceptions=False)


# ---- ports ------------------------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def keep_torch_threads():
    """`digitlab serve` run in-process sets torch's thread count; the rest of the session keeps its own."""
    import torch

    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("port", ["99999", "-1", "65536"])
def test_out_of_range_port_is_one_error_line_and_nothing_announced(capsys, port):
    assert cli_main(["serve", str(MODEL), "--port", port]) == 2  # a user error
    out, err = capsys.readouterr()
    assert "serving" not in out and err.strip().splitlines() == [f"digitlab: error: --port must be 1-65535 (or 0 for any free port), not {port}"]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_port_in_use_is_one_error_line_and_nothing_announced(capsys, workers):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert cli_main(["serve", str(MODEL), "--port", port, "--workers", workers]) == 2  # a user error
    out, err = capsys.readouterr()
    assert "serving" not in out, out
    assert err.strip().splitlines() == [f"digitlab: error: cannot listen on 127.0.0.1:{port} (Address already in use); try another --port"]


def test_port_zero_announces_the_port_actually_bound():
    with listen("127.0.0.1", 0) as sock:
        port = sock.getsockname()[1]
        assert port > 0 and url(sock) == f"http://127.0.0.1:{port}/"


# ---- request bodies -----------------------------------------------------------------------------------------------

def test_json_depth_skips_strings_and_escapes():
    assert json_depth(b'{"pixels": [[1, 2], [3, 4]]}') == 3
    assert json_depth(b'{"a": "[[[[[[[[[[", "b": "\\"[[[[[[["}') == 1
    assert json_depth(b"[" * 100_000) == 100_000
    assert json_depth(b"") == 0


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_deeply_nested_json_is_a_422_not_a_500(client, depth):
    body = b'{"pixels": ' + b"[" * depth + b"]" * depth + b"}"
    response = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code in (413, 422), response.text  # 100,000 deep is also over the pixels size cap
    assert set(response.json()) == {"detail"} and isinstance(response.json()["detail"], str)


def test_deep_json_within_the_pixel_size_cap_names_the_depth(client):
    body = b'{"pixels": ' + b"[" * 1_000 + b"]" * 1_000 + b"}"
    response = client.post("/api/inspect", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422 and "nested deeper" in response.json()["detail"]


def test_oversized_pixels_json_is_refused_before_parsing(client):
    body = json.dumps({"pixels": [[0.5] * 28] * 28, "padding": [0] * 100_000}).encode()
    response = client.post("/api/predict", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "pixels for this model" in response.json()["detail"]


# ---- OpenAPI: one error shape, every status documented ----------------------------------------------------------

def test_openapi_documents_every_error_status_with_one_shape(client):
    schema = client.get("/openapi.json").json()
    assert schema["components"]["schemas"]["ErrorDetail"]["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path in ("/api/predict", "/api/inspect"):
        responses = schema["paths"][path]["post"]["responses"]
        assert {"200", "400", "404", "408", "413", "415", "422"} <= set(responses), responses
        for status in ("400", "404", "408", "413", "415", "422"):
            assert responses[status]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorDetail")
    invalid = client.post("/api/inspect?max_maps=0", content=b"x", headers={"content-type": "image/png"})
    assert invalid.status_code == 422 and ErrorDetail(**invalid.json()).detail.startswith("query max_maps:")
    wrong_method = client.delete("/api/predict")
    assert wrong_method.status_code == 405 and "POST" in wrong_method.headers["allow"] and set(wrong_method.json()) == {"detail"}


# ---- the uvicorn seam of the worker processes ---------------------------------------------------------------------

@pytest.mark.slow
def test_handoff_protocol_serves_an_accepted_connection():
    """workers.handoff_protocol is the one use of uvicorn beyond its public API: if an upgrade breaks it, this says so."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(APP, 10))
    closed = []

    async def exchange() -> bytes:
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener:
            client_sock = socket.create_connection(listener.getsockname())
            accepted, _ = listener.accept()
        await loop.connect_accepted_socket(handoff_protocol(server, lambda: closed.append(True)), accepted)
        reader, writer = await asyncio.open_connection(sock=client_sock)
        writer.write(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        for _ in range(100):
            if closed:
                break
            await asyncio.sleep(0.01)
        return answer

    answer = asyncio.run(exchange())
    assert answer.startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answer
    assert closed == [True] and not server.server_state.connections


# ---- a real server: slow clients and a soak -------------------------------------------------------------------------

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`digitlab serve --port 0 --timeout 1` on 127.0.0.1: (port, pid, path of its stderr)."""
    log = tmp_path_factory.mktemp("serve") / "stderr.txt"
    with open(log, "w") as err:
        process = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", str(MODEL), "--port", "0", "--timeout", "1"],
                                   stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = process.stdout.readline()  # printed only once the socket is bound
        assert "serving" in line, (line, log.read_text())
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        deadline = time.time() + 60
        while not _healthy(port):
            assert process.poll() is None and time.time() < deadline, log.read_text()
            time.sleep(0.2)
        yield port, process.pid, log
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def _healthy(port: int) -> bool:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", "/healthz")
        return c.getresponse().status == 200
    except OSError:
        return False


def _slow_body(port: int, then_close: bool = False) -> bytes:
    """Declare 100,000 bytes, send 3; wait for the answer (or hang up at once)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /api/predict HTTP/1.1\r\nhost: t\r\ncontent-type: image/png\r\ncontent-length: 100000\r\n\r\nabc")
        if then_close:
            return b""
        answer = b""
        while chunk := s.recv(4096):  # the server closes after answering
            answer += chunk
        return answer


@pytest.mark.slow
def test_slow_body_gets_408_and_the_connection_is_closed(server):
    port, _, log = server
    t0 = time.perf_counter()
    answer = _slow_body(port)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 1 s" in answer, answer
    assert time.perf_counter() - t0 < 8
    _slow_body(port, then_close=True)  # a client that vanishes mid-body
    time.sleep(1.5)
    assert _healthy(port) and "Traceback" not in log.read_text(), log.read_text()


@pytest.mark.slow
def test_trickled_request_head_is_cut_off(server):
    """A client that opens a connection and never finishes its headers loses it after --timeout (1 s here)."""
    port, _, log = server
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-slow: ")
        t0 = time.perf_counter()
        assert s.recv(4096) == b""  # closed by the server, no answer
        assert 0.5 < time.perf_counter() - t0 < 8
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:  # a prompt client on a fresh connection
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert "Traceback" not in log.read_text(), log.read_text()


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


HOSTILE = [  # (content-type, body): each must get a 4xx
    ("application/json", b'{"pixels": ' + b"[" * 5_000 + b"]" * 5_000 + b"}"),
    ("application/json", b'{"pixels": [[1, 2]]}'),
    ("application/json", b"{"),
    ("text/plain", b"hello"),
    ("image/png", b"not a png"),
    ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
    ("image/png", b""),
]


def _soak_client(port: int, until: float, seed: int, tally: dict, lock: threading.Lock) -> None:
    rng = np.random.default_rng(seed)
    image = png(drawn_digit())
    pixels = json.dumps({"pixels": (rng.random((28, 28)) * 255).round().tolist()}).encode()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    while time.time() < until:
        pick = rng.integers(0, 10)
        try:
            if pick < 3:
                c.request("POST", "/api/predict", body=image, headers={"content-type": "image/png"})
            elif pick < 5:
                c.request("POST", "/api/predict", body=pixels, headers={"content-type": "application/json"})
            elif pick == 5:
                _slow_body(port, then_close=True)
                continue
            else:
                ctype, body = HOSTILE[rng.integers(0, len(HOSTILE))]
                c.request("POST", "/api/predict", body=body, headers={"content-type": ctype})
            response = c.getresponse()
            response.read()
            with lock:
                tally[response.status // 100] = tally.get(response.status // 100, 0) + 1
            if response.getheader("connection", "").lower() == "close":
                c.close()
        except (OSError, http.client.HTTPException) as e:
            with lock:
                tally.setdefault("errors", []).append(repr(e))
            c.close()


@pytest.mark.slow
def test_soak_valid_and_hostile_requests_never_5xx_nor_leak(server):
    """Three clients for 15 s of drawings, pixel arrays, hostile bodies and vanishing uploads: no 5xx, no
    connection errors, and the server's memory settles (RSS growth after a warm-up under 40 MB)."""
    port, pid, log = server
    tally: dict = {}
    lock = threading.Lock()
    _soak_client(port, time.time() + 2, 99, {}, lock)  # warm-up: first-use allocations are not a leak
    rss_before = _rss_kb(pid)
    until = time.time() + 15
    threads = [threading.Thread(target=_soak_client, args=(port, until, k, tally, lock)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    growth_mb = (_rss_kb(pid) - rss_before) / 1024
    print(f"soak: {tally.get(2, 0)} 2xx, {tally.get(4, 0)} 4xx, RSS growth {growth_mb:.1f} MB")
    assert tally.get(5, 0) == 0 and not tally.get("errors"), tally
    assert tally.get(2, 0) > 20 and tally.get(4, 0) > 20, tally
    assert growth_mb < 40, growth_mb
    assert _healthy(port) and "Traceback" not in log.read_text(), log.read_text()
