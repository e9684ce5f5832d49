"""Test-time views of a face and the one rule for averaging a model over them, used by the
evaluate stage, `fer predict`, distillation's teacher and ensembles (NumPy only)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

VIEW_COUNTS = {"none": 1, "flip": 2, "tencrop": 10}


def as_model_input(images: np.ndarray) -> np.ndarray:
    """(n, 48, 48) or (n, 48, 48, 1) faces as float32 (n, 48, 48, 1), the models' input."""
    x = np.asarray(images, dtype=np.float32)
    return x[..., None] if x.ndim == 3 else x


def shift_faces(images: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Move faces down by `dy` and right by `dx` pixels, repeating the edge pixels.

    With a model that centre-crops, shifting by the crop margin puts a corner crop in the
    centre: this is how ten-crop works on a model that takes the whole 48x48 face.
    """
    x = as_model_input(images)
    size_h, size_w = x.shape[1], x.shape[2]
    pad = max(abs(dy), abs(dx))
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    return padded[:, pad - dy : pad - dy + size_h, pad - dx : pad - dx + size_w]


def tta_views(images: np.ndarray, mode: str, crop_size: int) -> list[np.ndarray]:
    """The views averaged at test time: none (1), flip (2), tencrop (5 crops x 2 flips).

    Ten-crop uses the margin of the model's crop, or 4 pixels for a model trained on whole faces.
    """
    x = as_model_input(images)
    if mode == "none":
        return [x]
    flipped = x[:, :, ::-1]
    if mode == "flip":
        return [x, flipped]
    if mode != "tencrop":
        raise ValueError(f"test-time augmentation {mode!r}: expected 'none', 'flip' or 'tencrop'")
    m = (x.shape[1] - crop_size) // 2 if crop_size else 4
    offsets = [(0, 0), (m, m), (m, -m), (-m, m), (-m, -m)]
    return [shift_faces(view, dy, dx) for view in (x, flipped) for dy, dx in offsets]


def view_probabilities(
    predict_batch: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    mode: str = "none",
    crop_size: int = 0,
    batch_size: int = 256,
) -> np.ndarray:
    """Class probabilities of each face, averaged over its views (`tta_views`) with equal weight.

    `predict_batch` maps a float32 (k, 48, 48, 1) batch to (k, classes) probabilities: a Keras
    model's or an ONNX model's `predict_on_batch`. Each call gets up to `batch_size` views, all
    views of the same faces, so memory stays bounded and a single face is one call.
    """
    if mode not in VIEW_COUNTS:
        raise ValueError(f"test-time augmentation {mode!r}: expected 'none', 'flip' or 'tencrop'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    x = as_model_input(images)
    faces_per_call = max(1, batch_size // VIEW_COUNTS[mode])
    averaged = []
    for start in range(0, len(x), faces_per_call):
        views = tta_views(x[start : start + faces_per_call], mode, crop_size)
        probabilities = np.asarray(predict_batch(np.concatenate(views)), dtype=np.float32)
        averaged.append(probabilities.reshape(len(views), len(views[0]), -1).mean(axis=0))
    return np.concatenate(averaged) if averaged else np.zeros((0, 0), dtype=np.float32)
