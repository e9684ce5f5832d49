"""The photo tool on ONNX Runtime against the TensorFlow path: start-up, time per photo, serve
start-up, batched classification, and the cost of --quality best. Run it alone on the machine.

    python benchmarks/onnx_runtime.py --out benchmarks/results/onnx_runtime_cpu.json

Photos are 640x480 (the astronaut portrait, shifted so that each is different). The TensorFlow
path is the .keras model with the TensorFlow MTCNN, as `fer predict` ran before ONNX Runtime.
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
KERAS_MODEL = REPO / "models" / "pretrained" / "fer2013.keras"


def photo_folder(folder: Path, count: int) -> Path:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    base = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (640, 480), interpolation=cv2.INTER_AREA)
    for index in range(count):
        cv2.imwrite(str(folder / f"photo{index:03d}.jpg"), np.roll(base, 7 * index, axis=1))
    return folder


def median_seconds(command: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(command, check=True, capture_output=True, cwd=REPO)
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3)


def serve_ready_seconds(extra: list[str], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        start = time.perf_counter()
        server = subprocess.Popen(
            [sys.executable, "-m", "ferflow.apps.cli", "serve", "--port", str(port), *extra],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=REPO,
        )
        try:
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.02)
            times.append(time.perf_counter() - start)
        finally:
            server.terminate()
            server.wait()
    return round(statistics.median(times), 3)


def per_photo_ms(classifier, folder: Path, options, count: int) -> float:
    """Warm time per extra photo with PredictOptions `options`: (a folder of `count` photos - one
    photo) / (count - 1)."""
    from ferflow.faces.predict import predict_paths

    photos = sorted(folder.glob("*.jpg"))
    predict_paths(photos[:2], classifier, options)  # warm-up: graphs built, caches filled
    start = time.perf_counter()
    predict_paths(photos[:1], classifier, options)
    one = time.perf_counter() - start
    start = time.perf_counter()
    predict_paths(photos[:count], classifier, options)
    return round((time.perf_counter() - start - one) / (count - 1) * 1000, 1)


def report(results: dict, out: Path | None) -> None:
    """Print the results, and write them to `out` if given."""
    print(json.dumps(results, indent=1))
    if out:
        out.write_text(json.dumps(results, indent=1) + "\n")


def faces_per_second(classifier, tta: bool, count: int = 4096) -> float:
    from ferflow.faces.predict import classify_faces

    faces = np.random.default_rng(0).integers(0, 256, (count, 48, 48)).astype(np.uint8)
    classify_faces(classifier, faces[:256], tta)
    start = time.perf_counter()
    classify_faces(classifier, faces, tta)
    return round(count / (time.perf_counter() - start), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--photos", type=int, default=41)
    args = parser.parse_args()
    from ferflow.faces.predict import QUALITIES, PredictOptions, load_classifier

    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "python": platform.python_version(),
    }
    with tempfile.TemporaryDirectory() as scratch:
        folder = photo_folder(Path(scratch) / "photos", args.photos)
        one = str(folder / "photo000.jpg")
        fer = [sys.executable, "-m", "ferflow.apps.cli", "predict"]
        results["cold_predict_one_photo_s"] = {
            "onnx": median_seconds([*fer, one], args.repeats),
            "onnx_best": median_seconds([*fer, one, "--quality", "best"], args.repeats),
            "tensorflow": median_seconds(
                [*fer, one, "--model", str(KERAS_MODEL), "--detector", "mtcnn_tensorflow"], args.repeats
            ),
        }
        print(results, flush=True)
        results["serve_ready_s"] = {
            "onnx": serve_ready_seconds([], 3),
            "tensorflow": serve_ready_seconds(["--model", str(KERAS_MODEL)], 3),
        }
        print(results, flush=True)
        onnx_fast = load_classifier(QUALITIES["fast"][0])
        onnx_best = load_classifier(QUALITIES["best"][0])
        keras = load_classifier(KERAS_MODEL)
        results["per_extra_photo_ms"] = {
            "onnx": per_photo_ms(onnx_fast, folder, PredictOptions(), args.photos),
            "onnx_best": per_photo_ms(onnx_best, folder, PredictOptions(tta=True, find_turned=True), args.photos),
            "tensorflow": per_photo_ms(keras, folder, PredictOptions(detector="mtcnn_tensorflow"), args.photos),
        }
        print(results, flush=True)
    results["faces_per_second"] = {
        "onnx": faces_per_second(onnx_fast, False),
        "onnx_best": faces_per_second(onnx_best, True, 1024),
        "tensorflow": faces_per_second(keras, False),
    }
    report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
