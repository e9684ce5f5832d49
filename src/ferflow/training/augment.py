"""Training-time augmentation of batches of raw faces, vectorised in NumPy.

Every function takes a float32 batch of shape (n, h, w, 1) with values 0..255 and a seeded
`numpy.random.Generator`, and returns a new batch of the same shape: the caller's array is
never changed. Each works on the whole batch at once (no Python loop over faces), so the
augmentation of a batch costs a small fraction of the model step on a CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def random_crops(images: np.ndarray, crop_size: int, rng: np.random.Generator) -> np.ndarray:
    """A random `crop_size` square of each face, placed in the centre of an otherwise grey frame.

    The models centre-crop `crop_size` pixels first, so they see exactly the random crop, at
    the same input shape as at test time, where the centre crop (or ten-crop) is taken.
    """
    n, size_h, size_w = images.shape[:3]
    if not crop_size or crop_size >= min(size_h, size_w):
        return np.array(images, dtype=np.float32, copy=True)
    top = rng.integers(0, size_h - crop_size + 1, size=n)
    left = rng.integers(0, size_w - crop_size + 1, size=n)
    rows = top[:, None] + np.arange(crop_size)[None, :]  # (n, crop)
    cols = left[:, None] + np.arange(crop_size)[None, :]
    crops = images[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    out = np.full(images.shape, 128.0, dtype=np.float32)
    m_h, m_w = (size_h - crop_size) // 2, (size_w - crop_size) // 2
    out[:, m_h : m_h + crop_size, m_w : m_w + crop_size] = crops
    return out


def horizontal_flips(images: np.ndarray, rng: np.random.Generator, probability: float = 0.5) -> np.ndarray:
    """Mirror each face left-right with `probability`."""
    out = np.array(images, dtype=np.float32, copy=True)
    flip = rng.random(len(out)) < probability
    out[flip] = out[flip, :, ::-1]
    return out


def random_erasing(
    images: np.ndarray,
    probability: float,
    rng: np.random.Generator,
    area: tuple[float, float] = (0.02, 0.25),
    aspect: tuple[float, float] = (0.3, 3.3),
) -> np.ndarray:
    """Random erasing (Zhong et al., 2020): with `probability`, fill one random rectangle
    of 2-25% of the face (aspect ratio 0.3-3.3) with uniform noise."""
    out = np.array(images, dtype=np.float32, copy=True)
    n, size_h, size_w = out.shape[:3]
    chosen = rng.random(n) < probability
    target = rng.uniform(*area, size=n) * size_h * size_w
    ratio = np.exp(rng.uniform(np.log(aspect[0]), np.log(aspect[1]), size=n))
    h = np.clip(np.round(np.sqrt(target * ratio)), 1, size_h).astype(int)
    w = np.clip(np.round(np.sqrt(target / ratio)), 1, size_w).astype(int)
    top = (rng.random(n) * (size_h - h + 1)).astype(int)
    left = (rng.random(n) * (size_w - w + 1)).astype(int)
    rows = np.arange(size_h)[None, :, None]
    cols = np.arange(size_w)[None, None, :]
    mask = (
        (rows >= top[:, None, None])
        & (rows < (top + h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + w)[:, None, None])
        & chosen[:, None, None]
    )
    noise = rng.uniform(0.0, 255.0, size=out.shape).astype(np.float32)
    mask = mask.reshape(mask.shape + (1,) * (out.ndim - 3))
    return np.where(mask, noise, out)


def gaussian_noise(images: np.ndarray, probability: float, max_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """With `probability`, add Gaussian noise of a sigma drawn uniformly in [0, max_sigma]
    (on [0, 1] pixels) to a face; clip to 0..255."""
    out = np.array(images, dtype=np.float32, copy=True)
    n = len(out)
    sigma = np.where(rng.random(n) < probability, rng.uniform(0.0, max_sigma, size=n), 0.0)
    sigma = (sigma * 255.0).astype(np.float32).reshape((n,) + (1,) * (out.ndim - 1))
    noise = rng.standard_normal(size=out.shape, dtype=np.float32)
    return np.clip(out + noise * sigma, 0.0, 255.0)


@dataclass(frozen=True)
class Augmentation:
    """What is done to each training face, in this order: random crop, flip, erasing, noise.

    `crop_size` 0 means whole faces; probabilities 0 turn a step off.
    """

    crop_size: int = 0
    flip: bool = True
    erasing: float = 0.0
    noise: float = 0.0
    noise_max_sigma: float = 0.15

    def __call__(self, images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x = random_crops(images, self.crop_size, rng) if self.crop_size else np.asarray(images, np.float32)
        if self.flip:
            x = horizontal_flips(x, rng)
        if self.erasing > 0:
            x = random_erasing(x, self.erasing, rng)
        if self.noise > 0:
            x = gaussian_noise(x, self.noise, self.noise_max_sigma, rng)
        return x
