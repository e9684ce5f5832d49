"""Time per photo of each `--quality`, and of `--find-turned` and `--second-look`, on photos with a face and on
photos without one, measured in one run. Run it alone on the machine.

    python benchmarks/quality_cost.py --out benchmarks/results/quality_cost_cpu.json

Photos are 640x480: the astronaut portrait shifted so that each is different, and scikit-image's
face-free photos (where `--find-turned` searches two turned copies more). Each figure is the
warm time per extra photo: (a folder of N photos - one photo) / (N - 1), the median of --repeats.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
from pathlib import Path

import cv2
import numpy as np
from onnx_runtime import per_photo_ms, photo_folder, report

FACE_FREE = ("coffee", "chelsea", "rocket", "brick", "horse", "moon", "page", "clock", "grass", "gravel")


def face_free_folder(folder: Path, count: int) -> Path:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        photo = getattr(data, FACE_FREE[index % len(FACE_FREE)])()
        photo = photo.astype(np.uint8) * 255 if photo.dtype == bool else photo  # the horse is a mask
        photo = photo if photo.ndim == 3 else cv2.cvtColor(photo, cv2.COLOR_GRAY2RGB)
        photo = cv2.resize(cv2.cvtColor(photo, cv2.COLOR_RGB2BGR), (640, 480), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / f"photo{index:03d}.jpg"), np.roll(photo, 7 * index, axis=1))
    return folder


def median_ms(classifier, folder: Path, options, repeats: int) -> float:
    photos = len(list(folder.glob("*.jpg")))
    return round(statistics.median(per_photo_ms(classifier, folder, options, photos) for _ in range(repeats)), 1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path)
    parser.add_argument("--photos", type=int, default=21)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ferflow.faces.predict import QUALITIES, PredictOptions, load_classifier

    fast, best = (load_classifier(QUALITIES[name][0]) for name in ("fast", "best"))
    modes = {
        "fast": (fast, PredictOptions()),
        "fast --find-turned": (fast, PredictOptions(find_turned=True)),
        "fast --second-look": (fast, PredictOptions(second_look=True)),
        "best (ten-crop, --find-turned, --second-look)": (
            best,
            PredictOptions(tta=True, find_turned=True, second_look=True),
        ),
    }
    results: dict = {
        "machine": f"{platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "python": platform.python_version(),
        "ms_per_extra_640x480_photo": {},
    }
    with tempfile.TemporaryDirectory() as scratch:
        folders = {
            "with a face": photo_folder(Path(scratch) / "faces", args.photos),
            "without a face": face_free_folder(Path(scratch) / "face_free", args.photos),
        }
        for kind, folder in folders.items():
            results["ms_per_extra_640x480_photo"][kind] = {
                mode: median_ms(classifier, folder, options, args.repeats)
                for mode, (classifier, options) in modes.items()
            }
            print(kind, results["ms_per_extra_640x480_photo"][kind], flush=True)
    report(results, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
