"""Gaussian noise: shape, dtype, range, identity at zero, determinism, accuracy table."""

from __future__ import annotations

import numpy as np
import pytest

from fer.models import build_model
from fer.robustness import gaussian_noise, noise_accuracy


@pytest.fixture
def faces(rng) -> np.ndarray:
    return rng.integers(0, 256, size=(5, 48, 48)).astype(np.uint8)


def test_noise_keeps_shape_and_range(faces) -> None:
    noisy = gaussian_noise(faces, 0.2, seed=0)
    assert noisy.shape == faces.shape
    assert noisy.dtype == np.float32
    assert noisy.min() >= 0.0 and noisy.max() <= 255.0


def test_zero_sigma_is_identity(faces) -> None:
    np.testing.assert_array_equal(gaussian_noise(faces, 0.0, seed=0), faces.astype(np.float32))


def test_same_seed_same_noise_and_other_seed_other_noise(faces) -> None:
    np.testing.assert_array_equal(gaussian_noise(faces, 0.1, 3), gaussian_noise(faces, 0.1, 3))
    assert not np.array_equal(gaussian_noise(faces, 0.1, 3), gaussian_noise(faces, 0.1, 4))


def test_noise_strength_follows_sigma() -> None:
    grey = np.full((20, 48, 48), 128, dtype=np.uint8)  # mid-grey: clipping is negligible
    for sigma in (0.05, 0.1):
        measured = (gaussian_noise(grey, sigma, 0) / 255.0 - 128 / 255.0).std()
        assert measured == pytest.approx(sigma, rel=0.05)


def test_noise_accuracy_table(faces) -> None:
    model = build_model("seed_cnn", 7)
    labels = np.arange(5) % 7
    results = noise_accuracy(model, faces, labels, (0.05, 0.2), seed=0)
    assert [r["sigma"] for r in results] == [0.0, 0.05, 0.2]
    assert results[0]["drop"] == 0.0
    for r in results:
        assert 0.0 <= r["accuracy"] <= 1.0
        assert r["drop"] == pytest.approx(results[0]["accuracy"] - r["accuracy"])
