"""Load test of `digitlab serve` on loopback: N concurrent clients posting real MNIST test digits as PNGs.

    python benchmarks/serve_load.py RUN [--clients 8] [--seconds 30] [--port 8765]

Starts the server as its own process, waits for /healthz, then each client thread keeps one HTTP/1.1 connection
and posts PNGs as fast as answers come. Prints requests/s, p50/p99 latency, errors, and the server's RSS before
and after.
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
from PIL import Image

from digitlab import load_dataset


def _family(pid: int) -> list[int]:
    """A process and its children (the uvicorn workers)."""
    try:
        return [pid] + [int(p) for p in open(f"/proc/{pid}/task/{pid}/children").read().split()]
    except OSError:
        return [pid]


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children, in MB."""
    total = 0.0
    for p in _family(pid):
        with open(f"/proc/{p}/status") as f:
            total += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children so far."""
    total = 0
    for p in _family(pid):
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--port", type=int, default=8765)
    ap.add_argument("--workers", type=int, default=1, help="server worker processes")
    args = ap.parse_args()

    test = load_dataset("mnist", val_split=0).test
    pngs = []
    for img in test.images[:500, 0].numpy():
        buf = io.BytesIO()
        Image.fromarray(255 - img).save(buf, "PNG")  # dark ink on white, as a scan or the page's canvas sends
        pngs.append(buf.getvalue())

    server = subprocess.Popen([sys.executable, "-m", "digitlab", "serve", args.run, "--port", str(args.port),
                               "--workers", str(args.workers)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", args.port, timeout=2)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit(f"server did not start: {server.stderr.read().decode()[-500:]}")
                time.sleep(0.2)
        for png in pngs[:20]:  # warm up
            conn.request("POST", "/api/predict", body=png, headers={"Content-Type": "image/png"})
            conn.getresponse().read()
        conn.close()
        rss_before = rss_mb(server.pid)

        latencies: list[float] = []
        errors = [0]
        per_connection: list[float] = []  # each client's p50: equal when the server shares connections out evenly
        lock = threading.Lock()
        stop = time.perf_counter() + args.seconds

        def client(k: int) -> None:
            c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
            i = k
            mine, bad = [], 0
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                try:
                    c.request("POST", "/api/predict", body=pngs[i % len(pngs)], headers={"Content-Type": "image/png"})
                    r = c.getresponse()
                    body = r.read()
                    if r.status != 200 or "label" not in json.loads(body):
                        bad += 1
                except (OSError, http.client.HTTPException):
                    bad += 1
                    c = http.client.HTTPConnection("127.0.0.1", args.port, timeout=30)
                mine.append(time.perf_counter() - t0)
                i += args.clients
            with lock:
                latencies.extend(mine)
                per_connection.append(1000 * statistics.median(mine))
                errors[0] += bad

        t0 = time.perf_counter()
        cpu0, own0 = cpu_seconds(server.pid), time.process_time()
        threads = [threading.Thread(target=client, args=(k,)) for k in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        server_cpu, client_cpu = cpu_seconds(server.pid) - cpu0, time.process_time() - own0
        rss_after = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(10)
    lat = np.array(latencies) * 1000
    print(f"{args.clients} clients, {wall:.1f} s, {os.cpu_count()} CPU cores, {args.workers} server worker(s), torch threads 1 each; "
          f"per-connection p50 {min(per_connection):.1f}-{max(per_connection):.1f} ms")
    print("| requests | req/s | p50 (ms) | p99 (ms) | errors | server RSS before -> after (MB) | server CPU per request (ms) | clients' CPU per request (ms) |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| {len(lat)} | {len(lat) / wall:.0f} | {statistics.median(lat):.1f} | {np.percentile(lat, 99):.1f} | {errors[0]} | "
          f"{rss_before:.0f} -> {rss_after:.0f} | {1000 * server_cpu / len(lat):.2f} | {1000 * client_cpu / len(lat):.2f} |")


if __name__ == "__main__":
    main()
