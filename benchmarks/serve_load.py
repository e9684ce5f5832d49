"""Load on `fer serve`: bounded concurrent requests to a server on 127.0.0.1.

    python benchmarks/serve_load.py --requests 200 --concurrency 8 --out benchmarks/results/serve_load_cpu.json

Starts `fer serve` (the shipped model) on a free local port in a subprocess, waits for
/health, sends `--requests` POST /predict requests with a real portrait (scikit-image's
astronaut, 512x512) from `--concurrency` threads, and reports p50 / p95 latency, requests/s
and every status code. Then checks the server still answers /health, and stops it. Only
127.0.0.1 is ever contacted; the request count and a time limit bound the run.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import cv2
import httpx
from skimage import data as skimage_data


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(url: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.5)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


@contextmanager
def running_server(start_seconds: float) -> Iterator[tuple[str, subprocess.Popen]]:
    """`fer serve` with the shipped model on a free port of 127.0.0.1: (its base URL, its process),
    once /health answers; stopped on the way out."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "ferflow.apps.cli", "serve", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(f"{base}/health", start_seconds)
        yield base, server
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--time-limit", type=float, default=600.0, help="seconds; the run stops sending after it")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    photo = encoded.tobytes()
    with running_server(120) as (base, _):
        started = time.monotonic()

        def one(_: int) -> tuple[int, float]:
            if time.monotonic() - started > args.time_limit:
                return -1, 0.0
            begin = time.perf_counter()
            response = httpx.post(
                f"{base}/predict", files={"file": ("astronaut.jpg", photo, "image/jpeg")}, timeout=60.0
            )
            return response.status_code, time.perf_counter() - begin

        one(0)  # a warm-up request outside the timing
        began = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            results = list(pool.map(one, range(args.requests)))
        wall = time.perf_counter() - began
        alive = httpx.get(f"{base}/health", timeout=5.0).json() == {"status": "ok"}
    latencies = sorted(seconds * 1000 for status, seconds in results if status == 200)
    codes: dict[str, int] = {}
    for status, _ in results:
        codes[str(status)] = codes.get(str(status), 0) + 1
    report = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "status_codes": codes,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p95_ms": round(latencies[int(0.95 * (len(latencies) - 1))], 1) if latencies else None,
        "requests_per_second": round(len(latencies) / wall, 2),
        "wall_seconds": round(wall, 1),
        "server_alive_after": alive,
        "photo": "scikit-image astronaut, 512x512 JPEG",
        "machine": "2 x86-64 cores, no GPU, TensorFlow on CPU",
    }
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")
    sys.exit(0 if alive and codes.get("200") == args.requests else 1)


if __name__ == "__main__":
    main()
