"""`fer predict --engine ray` against the local engine, on the same machine in the same run: faces/s
on face crops (--no-detect) and photos/s on 640x480 photos (MTCNN), with 1 and 2 Ray workers.
Run it alone on the machine.

    python benchmarks/ray_engine.py --out benchmarks/results/ray_engine_cpu.json

The local Ray starts once (its start is reported, not counted). Each Ray run builds its pool of
actors, which load the models; that start is measured on one file and reported, and the rates
are given with and without it. Crops are the sample's training faces; photos are the astronaut
portrait, shifted so that each is different.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

from onnx_runtime import photo_folder  # noqa: E402

from ferflow.faces.predict import QUALITIES, PredictOptions, predict_paths  # noqa: E402
from ferflow.faces.ray_engine import connect, predict_paths_ray  # noqa: E402
from ferflow.model.classifier import load_classifier  # noqa: E402


def crop_folder(folder: Path, count: int) -> Path:
    files = sorted((REPO / "data" / "sample" / "train").glob("*/*.jpg"))[:count]
    folder.mkdir(parents=True)
    for index, path in enumerate(files):
        shutil.copy(path, folder / f"{index:05d}.jpg")
    return folder


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(folder: Path, options: PredictOptions, classifier, workers: list[int]) -> dict:
    """Seconds for the local engine and for Ray with each count of workers, and the actors' start."""
    model = classifier.path
    count = len(list(folder.iterdir()))
    one_file = [next(iter(sorted(folder.iterdir())))]
    results = {"items": count, "local_s": round(timed(lambda: predict_paths([folder], classifier, options)), 2)}
    for n in workers:
        startup = timed(lambda n=n: predict_paths_ray(one_file, model, classifier.class_names, options, workers=n))
        total = timed(lambda n=n: predict_paths_ray([folder], model, classifier.class_names, options, workers=n))
        results[f"ray_{n}_workers"] = {
            "total_s": round(total, 2),
            "actor_start_s": round(startup, 2),
            "per_s": round(count / total, 1),
            "per_s_after_start": round(count / max(total - startup, 1e-9), 1),
        }
    results["local_per_s"] = round(count / results["local_s"], 1)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=4000, help="face crops to score (default: 4000)")
    parser.add_argument("--photos", type=int, default=200, help="640x480 photos to score (default: 200)")
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()

    start = time.perf_counter()
    connect(None, cpus=os.cpu_count())
    ray_start = time.perf_counter() - start
    classifier = load_classifier(QUALITIES["fast"][0])
    with tempfile.TemporaryDirectory() as scratch:
        crops = crop_folder(Path(scratch) / "crops", args.crops)
        photos = photo_folder(Path(scratch) / "photos", args.photos)
        figures = {
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
            "python": platform.python_version(),
            "local_ray_start_s": round(ray_start, 2),
            "crops_no_detect": measure(crops, PredictOptions(detect=False), classifier, [1, 2]),
            "photos_mtcnn": measure(photos, PredictOptions(), classifier, [1, 2]),
        }
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
