"""Training augmentation: each step does what it says, on whole batches, seeded, never in place."""

from __future__ import annotations

import numpy as np
import pytest

from ferflow.training.augment import Augmentation, gaussian_noise, horizontal_flips, random_crops, random_erasing


def faces(n: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, 48, 48, 1)).astype(np.float32)


def test_random_crops_put_a_window_of_the_face_where_the_model_centre_crops() -> None:
    x = faces()
    out = random_crops(x, 44, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.float32
    offsets = set()
    for original, cropped in zip(x, out):
        centre = cropped[2:46, 2:46, 0]
        windows = [
            (dy, dx)
            for dy in range(5)
            for dx in range(5)
            if np.array_equal(original[dy : dy + 44, dx : dx + 44, 0], centre)
        ]
        assert windows, "the centre of every output must be a 44 px window of its face"
        offsets.add(windows[0])
    assert len(offsets) > 5  # the windows vary from face to face
    np.testing.assert_array_equal(out, random_crops(x, 44, np.random.default_rng(1)))
    np.testing.assert_array_equal(random_crops(x, 0, np.random.default_rng(1)), x)


def test_flips_mirror_about_half_of_the_faces_and_nothing_else() -> None:
    x = faces(200)
    out = horizontal_flips(x, np.random.default_rng(2))
    flipped = np.array([np.array_equal(o, f[:, ::-1]) for o, f in zip(out, x)])
    kept = np.array([np.array_equal(o, f) for o, f in zip(out, x)])
    assert (flipped | kept).all()
    assert 70 < flipped.sum() < 130
    x_before = x.copy()
    horizontal_flips(x, np.random.default_rng(2))
    np.testing.assert_array_equal(x, x_before)  # the input is never changed


def test_random_erasing_changes_one_rectangle_on_some_faces_and_is_seeded() -> None:
    x = np.full((100, 48, 48, 1), 128.0, dtype=np.float32)
    erased = random_erasing(x, 0.5, np.random.default_rng(3))
    changed = (erased != x).any(axis=(1, 2, 3))
    assert 30 < changed.sum() < 70
    for face in erased[changed]:
        rows, cols = np.nonzero(face[..., 0] != 128.0)
        box = face[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1, 0]
        assert (box != 128.0).mean() > 0.9  # one filled rectangle (noise may hit 128 by chance)
        assert 0.01 * 48 * 48 <= box.size <= 0.3 * 48 * 48
    assert erased.min() >= 0 and erased.max() <= 255
    np.testing.assert_array_equal(erased, random_erasing(x, 0.5, np.random.default_rng(3)))
    np.testing.assert_array_equal(random_erasing(x, 0.0, np.random.default_rng(3)), x)


def test_noise_has_the_drawn_strength_and_spares_the_rest() -> None:
    x = np.full((400, 48, 48, 1), 128.0, dtype=np.float32)
    out = gaussian_noise(x, 0.5, 0.2, np.random.default_rng(4))
    spread = (out - x).std(axis=(1, 2, 3)) / 255.0
    noisy = spread > 0
    assert 150 < noisy.sum() < 250
    assert spread.max() <= 0.2 * 1.1
    assert spread[noisy].mean() == pytest.approx(0.1, abs=0.015)  # uniform in [0, 0.2]
    assert out.min() >= 0 and out.max() <= 255
    np.testing.assert_array_equal(gaussian_noise(x, 0.0, 0.2, np.random.default_rng(4)), x)


def test_the_pipeline_composes_its_steps_and_is_seeded() -> None:
    x = faces()
    augment = Augmentation(crop_size=44, flip=True, erasing=0.5, noise=0.5, noise_max_sigma=0.1)
    a = augment(x, np.random.default_rng(5))
    np.testing.assert_array_equal(a, augment(x, np.random.default_rng(5)))
    assert not np.array_equal(a, augment(x, np.random.default_rng(6)))
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(Augmentation(flip=False)(x, np.random.default_rng(5)), x)
