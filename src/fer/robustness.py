"""Accuracy under corruption: additive Gaussian noise on [0, 1] pixels."""

from __future__ import annotations

import keras
import numpy as np

from fer.evaluate import predict_proba


def gaussian_noise(images: np.ndarray, sigma: float, seed: int) -> np.ndarray:
    """Add N(0, sigma) noise to pixels scaled to [0, 1], clip, and return 0..255 floats.

    sigma = 0 returns the images unchanged. The result stays float so that no
    quantisation is added on top of the noise.
    """
    scaled = np.asarray(images, dtype=np.float32) / 255.0
    if sigma > 0:
        rng = np.random.default_rng(seed)
        scaled = np.clip(scaled + rng.normal(0.0, sigma, size=scaled.shape).astype(np.float32), 0.0, 1.0)
    return scaled * 255.0


def noise_accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                   sigmas: tuple[float, ...], seed: int, batch_size: int = 256) -> list[dict[str, float]]:
    """Accuracy on clean images (sigma 0) and at each sigma, with its drop from clean."""
    results = []
    clean = None
    for i, sigma in enumerate((0.0, *sigmas)):
        noisy = gaussian_noise(images, sigma, seed + i)
        predictions = predict_proba(model, noisy, batch_size).argmax(axis=1)
        accuracy = float((predictions == np.asarray(labels)).mean())
        clean = accuracy if clean is None else clean
        results.append({"sigma": float(sigma), "accuracy": accuracy, "drop": clean - accuracy})
    return results
