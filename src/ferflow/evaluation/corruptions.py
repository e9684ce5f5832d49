"""The corruption suite, pure functions: each corruption maps raw 0..255 faces to corrupted 0..255 faces.

Every corruption has the signature `corrupt(images, level, rng) -> float32 images` with
the images' shape, values clipped to [0, 255], and `level = 0` returning the input
unchanged. `level` is the physical strength (noise sigma on [0, 1] pixels, blur sigma in
pixels, ...); CORRUPTIONS lists three or more severities for each. Randomness comes only
from the `rng` passed in, so the same seed gives the same corrupted faces.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

GREY = 128.0  # fill value for occlusions


def _as_float(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim not in (3, 4):
        raise ValueError(f"expected faces of shape (n, h, w) or (n, h, w, 1), got {images.shape}")
    return images.astype(np.float32, copy=True)


def gaussian_noise(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Add N(0, sigma) noise to pixels scaled to [0, 1], clip; stays float (no extra quantisation)."""
    out = _as_float(images)
    if sigma > 0:
        out = np.clip(out + rng.normal(0.0, sigma * 255.0, size=out.shape).astype(np.float32), 0.0, 255.0)
    return out


def salt_and_pepper(images: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Set a `fraction` of pixels to black or white, half each."""
    out = _as_float(images)
    if fraction > 0:
        hit = rng.random(out.shape) < fraction
        white = rng.random(out.shape) < 0.5
        out[hit & white] = 255.0
        out[hit & ~white] = 0.0
    return out


def gaussian_blur(images: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Blur each face with a Gaussian of `sigma` pixels."""
    out = _as_float(images)
    if sigma > 0:
        spatial = (0.0, sigma, sigma) + ((0.0,) if out.ndim == 4 else ())
        out = ndimage.gaussian_filter(out, sigma=spatial, mode="nearest")
    return np.clip(out, 0.0, 255.0)


def brightness(images: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Add `shift` (on [0, 1] pixels, brighter for positive) to every pixel, clip."""
    return np.clip(_as_float(images) + shift * 255.0, 0.0, 255.0)


def contrast(images: np.ndarray, reduction: float, rng: np.random.Generator) -> np.ndarray:
    """Pull each face towards its own mean grey: reduction 0 keeps it, 1 makes it flat."""
    out = _as_float(images)
    if reduction > 0:
        axes = tuple(range(1, out.ndim))
        mean = out.mean(axis=axes, keepdims=True)
        out = mean + (out - mean) * (1.0 - reduction)
    return np.clip(out, 0.0, 255.0)


def jpeg(images: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Re-encode as JPEG at quality 100 - strength (strength 70 is quality 30)."""
    out = _as_float(images)
    if strength <= 0:
        return out
    quality = int(round(100 - strength))
    for i, face in enumerate(out):
        ok, encoded = cv2.imencode(".jpg", np.clip(face, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a face")
        out[i] = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE).reshape(face.shape)
    return out


def _band(images: np.ndarray, height: float, centre: float) -> np.ndarray:
    out = _as_float(images)
    if height > 0:
        size = out.shape[1]
        half = height * size / 2.0
        top, bottom = int(round(centre * size - half)), int(round(centre * size + half))
        out[:, max(top, 0) : min(bottom, size)] = GREY
    return out


def eye_band(images: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
    """Grey band of `height` (fraction of the face) over the eyes, about 38% from the top."""
    return _band(images, height, 0.38)


def mouth_band(images: np.ndarray, height: float, rng: np.random.Generator) -> np.ndarray:
    """Grey band of `height` (fraction of the face) over the mouth, about 77% from the top."""
    return _band(images, height, 0.77)


def random_patch(images: np.ndarray, side: float, rng: np.random.Generator) -> np.ndarray:
    """One grey square of `side` (fraction of the face) per face, at a random place."""
    out = _as_float(images)
    if side > 0:
        size = out.shape[1]
        pixels = max(1, int(round(side * size)))
        corners = rng.integers(0, size - pixels + 1, size=(len(out), 2))
        for face, (top, left) in zip(out, corners):
            face[top : top + pixels, left : left + pixels] = GREY
    return out


def _warp_each(out: np.ndarray, matrices: list[np.ndarray]) -> np.ndarray:
    size = out.shape[1]
    for i, matrix in enumerate(matrices):
        face = out[i].reshape(size, size)
        out[i] = cv2.warpAffine(
            face, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        ).reshape(out[i].shape)
    return np.clip(out, 0.0, 255.0)


def rotation(images: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    """Rotate each face by `degrees`, clockwise or anticlockwise at random; edges replicated."""
    out = _as_float(images)
    if degrees <= 0:
        return out
    size = out.shape[1]
    signs = rng.choice([-1.0, 1.0], size=len(out))
    centre = ((size - 1) / 2.0, (size - 1) / 2.0)
    return _warp_each(out, [cv2.getRotationMatrix2D(centre, float(s * degrees), 1.0) for s in signs])


def horizontal_shift(images: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Shift each face left or right (at random) by `fraction` of its width; edges replicated."""
    out = _as_float(images)
    if fraction <= 0:
        return out
    pixels = fraction * out.shape[2]
    signs = rng.choice([-1.0, 1.0], size=len(out))
    return _warp_each(out, [np.float32([[1, 0, s * pixels], [0, 1, 0]]) for s in signs])


def down_up_scale(images: np.ndarray, reduction: float, rng: np.random.Generator) -> np.ndarray:
    """Shrink to (1 - reduction) of the size, then enlarge back: a lower effective resolution."""
    out = _as_float(images)
    if reduction <= 0:
        return out
    size = out.shape[1]
    small = max(2, int(round(size * (1.0 - reduction))))
    for i, face in enumerate(out):
        low = cv2.resize(face.reshape(size, size), (small, small), interpolation=cv2.INTER_AREA)
        out[i] = cv2.resize(low, (size, size), interpolation=cv2.INTER_LINEAR).reshape(face.shape)
    return np.clip(out, 0.0, 255.0)


@dataclass(frozen=True)
class Corruption:
    function: Callable[[np.ndarray, float, np.random.Generator], np.ndarray]
    levels: tuple[float, ...]  # severities 1, 2, 3, ...: the physical strength at each
    unit: str


CORRUPTIONS: dict[str, Corruption] = {
    "gaussian_noise": Corruption(gaussian_noise, (0.05, 0.1, 0.2), "sigma on [0,1] pixels"),
    "salt_and_pepper": Corruption(salt_and_pepper, (0.02, 0.05, 0.1), "fraction of pixels"),
    "gaussian_blur": Corruption(gaussian_blur, (0.5, 1.0, 1.5), "sigma in pixels"),
    "brightness": Corruption(brightness, (0.1, 0.2, 0.3), "shift on [0,1] pixels"),
    "contrast": Corruption(contrast, (0.3, 0.5, 0.7), "fraction of contrast removed"),
    "jpeg": Corruption(jpeg, (70, 85, 95), "100 - JPEG quality"),
    "eye_occlusion": Corruption(eye_band, (0.1, 0.2, 0.3), "band height, fraction of face"),
    "mouth_occlusion": Corruption(mouth_band, (0.1, 0.2, 0.3), "band height, fraction of face"),
    "random_patch": Corruption(random_patch, (0.2, 0.3, 0.4), "patch side, fraction of face"),
    "rotation": Corruption(rotation, (10, 20, 30), "degrees"),
    "horizontal_shift": Corruption(horizontal_shift, (0.05, 0.1, 0.2), "fraction of width"),
    "down_up_scale": Corruption(down_up_scale, (0.5, 0.67, 0.75), "fraction of resolution removed"),
}


def corrupt(images: np.ndarray, name: str, severity: int, seed: int) -> np.ndarray:
    """Apply corruption `name` at `severity` (0 = clean, 1..len(levels)) with its own seed."""
    if name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; known: {sorted(CORRUPTIONS)}")
    corruption = CORRUPTIONS[name]
    if not 0 <= severity <= len(corruption.levels):
        raise ValueError(f"{name}: severity {severity} outside 0..{len(corruption.levels)}")
    level = 0.0 if severity == 0 else corruption.levels[severity - 1]
    return corruption.function(images, level, np.random.default_rng([seed, severity]))
