"""Ours against the `fer` package on PyPI (25.10.3), on the same grids, portraits and crops.

    pip install --no-deps fer==25.10.3   # its detector and model need only what we already have
    python benchmarks/vs_fer_package.py --model models/pretrained/fer2013.keras \
        --faces /path/to/fer2013/test --out benchmarks/results/vs_fer_package_cpu.csv

`fer` (default settings, as its README uses it): OpenCV's Haar cascade, then a 58k-parameter
mini-Xception on 64x64 crops through TensorFlow Lite. Ours: `ferflow.faces.predict.faces_in` with
the default detector, framing and model, centre crop (no TTA). Both see the same images.

Reported per tool:
- grids (see grids.py; faces from --faces): faces found, false positives, emotion accuracy on
  the faces found and on all faces placed (a miss counts as wrong);
- faces found in scikit-image's astronaut and matplotlib's Grace Hopper portraits (one each);
- end to end latency on the astronaut resized to 640x480 (median of --repeats, model loaded);
- accuracy and faces/s on 1,000 48x48 crops given as such: `fer` through its public call, one
  face per call (`detect_emotions(crop, face_rectangles=...)`; it runs its TFLite model one
  face at a time anyway); ours batched through `classify_faces`.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from grids import FACES, draw, grid, load_faces, match, write_csv
from matplotlib import cbook
from skimage import data as skimage_data

from ferflow.faces.detectors import DEFAULT_DETECTOR, face_detector
from ferflow.faces.photo import Image
from ferflow.faces.predict import PredictOptions, classify_faces, faces_in, load_classifier


class FerPackage:
    """The PyPI `fer` package behind the same two calls as ours."""

    name = "fer 25.10.3 (haar + mini-Xception)"

    def __init__(self) -> None:
        from fer.fer import FER

        logging.getLogger("fer").setLevel(logging.WARNING)
        self.fer = FER()
        # 25.10.3 declares detect_emotions a staticmethod that still takes the instance first.
        self.detect_emotions = lambda image, **kw: FER.detect_emotions(self.fer, image, **kw)

    def faces(self, bgr: np.ndarray) -> list[tuple[tuple[int, int, int, int], str]]:
        return [
            (tuple(int(v) for v in face["box"]), max(face["emotions"], key=face["emotions"].get))
            for face in self.detect_emotions(bgr)
        ]

    def classify_crops(self, crops: np.ndarray) -> list[str]:
        labels = []
        # It widens every box by 10 px per side (its `offsets`): a box 10 px inside the crop
        # makes it classify exactly the crop.
        for crop in crops:
            found = self.detect_emotions(
                cv2.cvtColor(crop, cv2.COLOR_GRAY2BGR),
                face_rectangles=[(10, 10, crop.shape[1] - 20, crop.shape[0] - 20)],
            )
            labels.append(max(found[0]["emotions"], key=found[0]["emotions"].get))
        return labels


class Ours:
    def __init__(self, model: Path) -> None:
        self.classifier = load_classifier(model)
        self.detector = face_detector(DEFAULT_DETECTOR)
        self.options = PredictOptions()
        self.name = f"ferflow ({DEFAULT_DETECTOR} + {model.name})"

    def faces(self, bgr: np.ndarray) -> list[tuple[tuple[int, int, int, int], str]]:
        return [
            (face.box, face.emotion)
            for face in faces_in(
                Image("grid", None, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)), self.classifier, self.options, self.detector
            )
        ]

    def classify_crops(self, crops: np.ndarray) -> list[str]:
        names = self.classifier.class_names
        return [names[i] for i in classify_faces(self.classifier, crops, tta=False).argmax(axis=1)]


def measure(tool, faces: np.ndarray, labels: list[str], seeds: list[int], sizes: list[int], repeats: int) -> dict:
    found = false = correct = placed_count = 0
    for size, seed in itertools.product(sizes, seeds):
        chosen = draw(FACES, seed, len(faces))
        image, placed = grid([faces[i] for i in chosen], size)
        results = tool.faces(image)
        matched, miss = match([box for box, _ in results], placed)
        emotion_of = dict(results)
        placed_count, false = placed_count + len(placed), false + miss
        for index, box in zip(chosen, matched):
            if box is not None:
                found += 1
                correct += emotion_of[box] == labels[index]
    portraits = {
        "astronaut": cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR),
        "grace_hopper": cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
    }
    photo = cv2.resize(portraits["astronaut"], (640, 480), interpolation=cv2.INTER_AREA)
    tool.faces(photo)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        tool.faces(photo)
        times.append((time.perf_counter() - start) * 1000)
    crop_indices = draw(min(1000, len(faces)), 0, len(faces))
    crops = faces[crop_indices]
    # Warm-up with the same call: a first call at a new batch shape compiles ours (~0.7 s, once).
    tool.classify_crops(crops)
    start = time.perf_counter()
    crop_labels = tool.classify_crops(crops)
    seconds = time.perf_counter() - start
    return {
        "tool": tool.name,
        "faces_placed": placed_count,
        "faces_found": found,
        "recall": round(found / placed_count, 3),
        "false_positives_per_24_faces": round(false / placed_count * FACES, 2),
        "accuracy_on_faces_found": round(correct / max(found, 1), 3),
        "accuracy_on_faces_placed": round(correct / placed_count, 3),
        **{f"faces_in_{name}": len(tool.faces(image)) for name, image in portraits.items()},
        "ms_per_640x480_photo": round(statistics.median(times), 1),
        "accuracy_on_crops": round(float(np.mean([p == labels[i] for p, i in zip(crop_labels, crop_indices)])), 3),
        "crops_per_second": round(len(crops) / seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/pretrained/fer2013.keras"))
    parser.add_argument("--faces", required=True, help="a folder of <emotion>/*.jpg faces or dataset.npz:test")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96, 160, 320])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    faces, label_indices, names = load_faces(args.faces)
    labels = [names[i] for i in label_indices]
    rows = []
    for tool in (FerPackage(), Ours(args.model)):
        rows.append(measure(tool, faces, labels, args.seeds, args.sizes, args.repeats))
        print(rows[-1], flush=True)
    if args.out:
        write_csv(
            args.out,
            f"{Path(__file__).name}: {args.faces}, seeds {args.seeds}, sizes {args.sizes} px, model {args.model}",
            rows,
        )


if __name__ == "__main__":
    main()
