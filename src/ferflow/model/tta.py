"""Test-time augmentation views, shared by the evaluate stage and `fer predict` (NumPy only)."""

from __future__ import annotations

import numpy as np


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
