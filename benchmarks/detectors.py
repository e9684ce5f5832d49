"""Face detectors compared on photo-like grids of FER-2013 faces and on two real portraits.

    python benchmarks/detectors.py --source ../shared/fer2013 --split test --seeds 0 1 2 \
        --sizes 48 96 160 320 --out benchmarks/results/detectors_cpu.csv

A grid: 24 faces drawn (by seed) from `<source>/<split>/`, each upscaled to `size` px and
centred in a grey cell 1.5 x `size` wide, 6 per row (the layout of issue #14). A placed face
counts as found when a detected box overlaps it with IoU >= 0.3 (detectors frame faces
differently: Haar and dlib cut at the brows, MTCNN includes the forehead); every other box
is a false positive. Also: faces found in scikit-image's astronaut and matplotlib's Grace
Hopper portraits (one face each), and detection latency on a 640x480 photo (median of 20).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from matplotlib import cbook
from skimage import data as skimage_data

from ferflow.detectors import DETECTORS, detect_faces, face_detector

PER_ROW, FACES = 6, 24


def grid(faces: list[np.ndarray], size: int) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    cell = size * 3 // 2
    rows = (len(faces) + PER_ROW - 1) // PER_ROW
    canvas = np.full((rows * cell, PER_ROW * cell), 128, dtype=np.uint8)
    placed = []
    for i, face in enumerate(faces):
        top, left = (i // PER_ROW) * cell + (cell - size) // 2, (i % PER_ROW) * cell + (cell - size) // 2
        canvas[top:top + size, left:left + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        placed.append((left, top, size, size))
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2BGR), placed


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def score(boxes, placed, threshold: float = 0.3) -> tuple[int, int]:
    found = sum(any(iou(box, p) >= threshold for box in boxes) for p in placed)
    false = sum(not any(iou(box, p) >= threshold for p in placed) for box in boxes)
    return found, false


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96, 160, 320])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    files = sorted((args.source / args.split).glob("*/*.jpg"))
    portraits = {
        "astronaut": cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR),
        "grace_hopper": cv2.imread(str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))),
    }
    photo_640 = cv2.resize(portraits["astronaut"], (640, 480), interpolation=cv2.INTER_AREA)
    rows = []
    for name in args.detectors:
        detector = face_detector(name)
        found = false = total = 0
        per_size = {}
        for size in args.sizes:
            size_found = 0
            for seed in args.seeds:
                chosen = np.random.default_rng(seed).choice(len(files), FACES, replace=False)
                image, placed = grid([cv2.imread(str(files[i]), cv2.IMREAD_GRAYSCALE) for i in chosen], size)
                hit, miss = score(detect_faces(image, detector, min_size=24), placed)
                found, false, total, size_found = found + hit, false + miss, total + len(placed), size_found + hit
            per_size[size] = size_found / (len(args.seeds) * FACES)
        detect_faces(photo_640, detector)  # warm-up
        times = []
        for _ in range(20):
            start = time.perf_counter()
            detect_faces(photo_640, detector)
            times.append((time.perf_counter() - start) * 1000)
        row = {"detector": name, "faces_placed": total, "recall": round(found / total, 3),
               **{f"recall_{size}px": round(value, 3) for size, value in per_size.items()},
               "false_positives_per_24_faces": round(false / total * FACES, 2),
               **{f"faces_in_{p}": len(detect_faces(img, detector)) for p, img in portraits.items()},
               "ms_per_640x480_photo": round(statistics.median(times), 1)}
        rows.append(row)
        print(row, flush=True)
    if args.out:
        with args.out.open("w", newline="") as handle:
            handle.write(f"# {Path(__file__).name}: {args.source}/{args.split}, seeds {args.seeds}, sizes "
                         f"{args.sizes} px; machine: 2 x86-64 cores, no GPU\n")
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
