"""Photo-like grids of FER-2013 faces, shared by the detector and crop-framing benchmarks.

A grid: faces upscaled to `size` px, each centred in a grey cell 1.5 x `size` wide, 6 per row
(a photo-like layout). A placed face counts as found when a detected box overlaps it with
IoU >= 0.3: detectors frame faces differently (Haar and dlib cut at the brows, MTCNN includes
the forehead).
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np

PER_ROW, FACES = 6, 24
Box = tuple[int, int, int, int]


def grid(faces: list[np.ndarray], size: int) -> tuple[np.ndarray, list[Box]]:
    """An RGB canvas with the grey `faces` placed at `size` px, and where each was placed."""
    cell = size * 3 // 2
    rows = (len(faces) + PER_ROW - 1) // PER_ROW
    canvas = np.full((rows * cell, PER_ROW * cell), 128, dtype=np.uint8)
    placed = []
    for i, face in enumerate(faces):
        top, left = (i // PER_ROW) * cell + (cell - size) // 2, (i % PER_ROW) * cell + (cell - size) // 2
        canvas[top : top + size, left : left + size] = cv2.resize(face, (size, size), interpolation=cv2.INTER_CUBIC)
        placed.append((left, top, size, size))
    return cv2.cvtColor(canvas, cv2.COLOR_GRAY2RGB), placed


def iou(a: Box, b: Box) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


def match(boxes: list[Box], placed: list[Box], threshold: float = 0.3) -> tuple[list[Box | None], int]:
    """For each placed face the detected box that overlaps it most (None if none reaches the
    threshold), and the number of boxes that match no placed face (false positives)."""
    matched = []
    for p in placed:
        best = max(boxes, key=lambda box: iou(box, p), default=None)
        matched.append(best if best is not None and iou(best, p) >= threshold else None)
    false = sum(not any(iou(box, p) >= threshold for p in placed) for box in boxes)
    return matched, false


def draw(count: int, seed: int, total: int) -> np.ndarray:
    """Which `count` of `total` faces a grid with this seed shows."""
    return np.random.default_rng(seed).choice(total, count, replace=False)


def load_faces(source: str, class_names: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Grey 48x48 faces, their label indices and the class names, from either a Kaggle-layout
    folder (<folder>/<emotion>/*.jpg) or a split of a processed dataset ('dataset.npz:val')."""
    path, _, split = source.rpartition(":") if source.endswith((":train", ":val", ":test")) else (source, "", "")
    if split:
        data = np.load(path, allow_pickle=False)
        names = [str(n) for n in data["class_names"]]
        faces, labels = data[f"x_{split}"], data[f"y_{split}"]
    else:
        files = sorted(Path(path).glob("*/*.jpg"))
        if not files:
            raise SystemExit(f"error: no <emotion>/*.jpg faces under '{path}'")
        names = class_names or sorted({f.parent.name for f in files})
        faces = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])
        labels = np.array([names.index(f.parent.name) for f in files])
    if class_names is not None and names != list(class_names):
        raise SystemExit(f"error: {source} has classes {names}, the model {list(class_names)}")
    return faces, labels, names


def write_csv(path: Path, about: str, rows: list[dict]) -> None:
    """Rows as CSV under a '# about; machine' comment line."""
    with path.open("w", newline="") as handle:
        handle.write(f"# {about}; machine: 2 x86-64 cores, no GPU\n")
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
