"""Peak memory of the photo tool under large inputs: `fer serve` with many concurrent large
uploads and a soak with large photos mixed in, and `fer predict --annotate` on many phone photos.

    python benchmarks/memory_bounds.py --out benchmarks/results/memory_bounds_cpu.json
    python benchmarks/memory_bounds.py --soak-requests 10000 --annotate-photos 256 --out ...

Every figure is the resident set of the server or predict process, read from Linux's
/proc/PID/status (VmHWM is the peak; VmRSS, sampled, shows whether a soak plateaus). The server
listens on 127.0.0.1 only; every request loop is bounded by its count and a time limit.

- serve, burst: `--burst` concurrent uploads of a `--large-side`-pixel square PNG (grey and
  smooth, so the file is small and the decoded photo is not: a decompression bomb under the limit);
- serve, soak: `--soak-requests` requests from 8 threads, the astronaut portrait with every
  `--large-every`-th one the large PNG, with VmRSS sampled every `--sample-every` requests;
- predict --annotate: `--annotate-photos` JPEG photos of 4000x3000 (12 MP) with a face.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from serve_load import running_server
from skimage import data as skimage_data

from ferflow.io import write_json
from ferflow.runtime import environment_info


def memory_of(pid: int) -> dict[str, float]:
    """Current (VmRSS) and peak (VmHWM) resident memory of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": round(fields["VmRSS"], 1), "peak_mb": round(fields["VmHWM"], 1)}


def png_of(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def large_png(side: int) -> bytes:
    ramp = (np.arange(side, dtype=np.uint32) * 255 // side).astype(np.uint8)
    return png_of(np.broadcast_to(ramp, (side, side)).copy())


def portrait_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(skimage_data.astronaut()).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def post(base: str, name: str, data: bytes) -> int:
    try:
        return httpx.post(f"{base}/predict", files={"file": (name, data)}, timeout=300.0).status_code
    except httpx.HTTPError as error:
        return -1 if "timed out" not in str(error) else -2


def serve_figures(args) -> dict:
    with running_server(60) as (base, server):
        idle = memory_of(server.pid)
        large = large_png(args.large_side)
        started = time.monotonic()
        with ThreadPoolExecutor(args.burst) as pool:
            burst_codes = list(pool.map(lambda i: post(base, f"large{i}.png", large), range(args.burst)))
        burst = {
            "uploads": args.burst,
            "photo": f"{args.large_side}x{args.large_side} grey PNG, {len(large) / 1e3:.0f} KB",
            "seconds": round(time.monotonic() - started, 1),
            "status_codes": {str(c): burst_codes.count(c) for c in sorted(set(burst_codes))},
            **memory_of(server.pid),
        }
        portrait = portrait_jpeg()
        samples, codes = [], []
        deadline = time.monotonic() + args.time_limit
        sent = 0
        with ThreadPoolExecutor(8) as pool:
            while sent < args.soak_requests and time.monotonic() < deadline:
                chunk = range(sent, min(sent + args.sample_every, args.soak_requests))
                jobs = [
                    (f"large{i}.png", large) if i % args.large_every == args.large_every - 1 else ("a.jpg", portrait)
                    for i in chunk
                ]
                codes += list(pool.map(lambda job: post(base, *job), jobs))
                sent += len(jobs)
                samples.append({"requests": sent, **memory_of(server.pid)})
        soak = {
            "requests": sent,
            "large_every": args.large_every,
            "status_codes": {str(c): codes.count(c) for c in sorted(set(codes))},
            "rss_mb_samples": samples,
            "peak_mb": samples[-1]["peak_mb"] if samples else None,
            "health_after": httpx.get(f"{base}/health", timeout=10).status_code,
        }
        return {"idle": idle, "burst": burst, "soak": soak}


def annotate_figures(args) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="fer-annotate-bench-"))
    try:
        photo = np.full((3000, 4000, 3), 180, np.uint8)
        face = np.asarray(Image.fromarray(skimage_data.astronaut()[0:256, 128:384]).resize((1024, 1024)))
        photo[800:1824, 1500:2524] = face
        first = folder / "photos" / "photo000.jpg"
        first.parent.mkdir(parents=True)
        Image.fromarray(photo).save(first, quality=90)
        for index in range(1, args.annotate_photos):
            shutil.copy(first, first.with_name(f"photo{index:03d}.jpg"))
        started = time.monotonic()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource, sys; from ferflow.apps.cli import main; code = main(sys.argv[1:]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)",
                "predict",
                str(folder / "photos"),
                "--annotate",
                str(folder / "annotated"),
                "--json",
                str(folder / "faces.json"),
            ],
            capture_output=True,
            text=True,
            timeout=args.time_limit,
        )
        faces = len(json.loads((folder / "faces.json").read_text())["faces"]) if done.returncode in (0, 1) else 0
        return {
            "photos": args.annotate_photos,
            "photo": f"4000x3000 JPEG, {first.stat().st_size / 1e6:.1f} MB",
            "exit_code": done.returncode,
            "faces": faces,
            "annotated_copies": len(list((folder / "annotated").glob("*.jpg"))),
            "seconds": round(time.monotonic() - started, 1),
            "peak_mb": round(int(done.stderr.strip().splitlines()[-1]) / 1024, 1),
        }
    finally:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=16)
    parser.add_argument("--large-side", type=int, default=7000)
    parser.add_argument("--soak-requests", type=int, default=2000)
    parser.add_argument("--large-every", type=int, default=100)
    parser.add_argument("--sample-every", type=int, default=250)
    parser.add_argument("--annotate-photos", type=int, default=256)
    parser.add_argument("--time-limit", type=float, default=1200.0, help="seconds for each part")
    parser.add_argument("--skip", choices=["serve", "annotate"], action="append", default=[])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {"environment": environment_info(), "cpus": len(os.sched_getaffinity(0))}
    if "serve" not in args.skip:
        result["serve"] = serve_figures(args)
    if "annotate" not in args.skip:
        result["predict_annotate"] = annotate_figures(args)
    print(json.dumps(result, indent=1))
    if args.out:
        write_json(args.out, result, sort_keys=False)


if __name__ == "__main__":
    main()
