"""Model registry: shapes, parameter counts, one training step, determinism, save/load."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from ferflow.io import save_model
from ferflow.model.registry import ARCHITECTURES, build_model, make_augmentation
from ferflow.runtime import seed_everything
from ferflow.training.augment import random_crops
from ferflow.training.recipe import compile_model
from ferflow.training.train import one_hot


def conv_params(c_in: int, c_out: int) -> int:
    return 3 * 3 * c_in * c_out + c_out


def dense_params(n_in: int, n_out: int) -> int:
    return n_in * n_out + n_out


def batch_norm_params(channels: int) -> int:
    return 4 * channels  # gamma, beta, moving mean, moving variance


def expected_seed_cnn_params(num_classes: int) -> int:
    """Count the seed CNN's parameters from its specification, independently of Keras."""
    convs = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
    total = sum(conv_params(i, o) + batch_norm_params(o) for i, o in convs)
    flat = (48 // 16) * (48 // 16) * 256  # four 2x2 poolings
    total += dense_params(flat, 512) + batch_norm_params(512)
    total += dense_params(512, 256) + batch_norm_params(256)
    return total + dense_params(256, num_classes)


@pytest.mark.parametrize("num_classes", [7, 4])
def test_seed_cnn_shape_and_parameter_count(num_classes: int) -> None:
    model = build_model("seed_cnn", num_classes, augmentation=make_augmentation(0))
    assert model.input_shape == (None, 48, 48, 1)
    assert model.output_shape == (None, num_classes)
    assert model.count_params() == expected_seed_cnn_params(num_classes)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_every_registered_model_trains_one_step_on_raw_pixels(arch: str, rng) -> None:
    seed_everything(0)
    model = build_model(arch, 7, augmentation=make_augmentation(0))
    compile_model(model, 1e-3)
    x = rng.integers(0, 256, size=(8, 48, 48, 1)).astype("float32")
    y = one_hot(np.arange(8) % 7, 7)
    before = [w.copy() for w in model.get_weights()]
    history = model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    probabilities = model.predict(x, verbose=0)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_params_know_exactly_the_registered_architectures() -> None:
    from ferflow import ARCHITECTURE_NAMES

    assert set(ARCHITECTURE_NAMES) == set(ARCHITECTURES)


@pytest.mark.parametrize("crop", [40, 44])
def test_crop_is_inside_the_model_random_in_training_centred_at_test(crop: int, rng) -> None:
    seed_everything(0)
    model = build_model("seed_cnn_compact", 7, augmentation=make_augmentation(0), crop_size=crop)
    assert model.input_shape == (None, 48, 48, 1)
    x = rng.integers(0, 256, size=(2, 48, 48, 1)).astype("float32")
    centre = keras.ops.convert_to_numpy(model.get_layer("centre_crop")(x))
    margin = (48 - crop) // 2
    np.testing.assert_array_equal(centre, x[:, margin : margin + crop, margin : margin + crop])
    # In training the random crop comes before the model (ferflow.training.augment.random_crops): the
    # model's centre crop then sees exactly a crop-sized window of the face, anywhere in it.
    faces = np.repeat(x[:1], 300, axis=0)
    seen = keras.ops.convert_to_numpy(model.get_layer("centre_crop")(random_crops(faces, crop, rng)))
    offsets = []
    for window in seen:
        matches = [
            (top, left)
            for top in range(2 * margin + 1)
            for left in range(2 * margin + 1)
            if np.array_equal(window, x[0, top : top + crop, left : left + crop])
        ]
        assert len(matches) == 1
        offsets.append(matches[0])
    tops, lefts = zip(*offsets)
    assert {min(tops), max(tops), min(lefts), max(lefts)} == {0, 2 * margin}  # every edge of the face is reached


def test_vgg_follows_the_published_layout() -> None:
    model = build_model("vgg", 7)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [64, 64, 128, 128, 256, 256, 512, 512]
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 4
    assert model.count_params() * 4 < 30e6  # float32 weights fit the 30 MB budget


def test_pretrained_weights_only_for_backbones_that_take_them() -> None:
    with pytest.raises(ValueError, match="weights 'imagenet' apply only to"):
        build_model("seed_cnn", 7, weights="imagenet")
    # an architecture that takes weights, but not these: refused before anything is built
    with pytest.raises(ValueError, match="weights 'dlib' apply only to face_resnet, not 'efficientnet_b0'"):
        build_model("efficientnet_b0", 7, weights="dlib")


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ValueError, match="not registered"):
        build_model("no_such_net", 7)


def test_normalisation_is_inside_the_model(rng) -> None:
    model = build_model("seed_cnn", 7)
    rescale = model.get_layer("normalise")
    x = rng.integers(0, 256, size=(2, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(rescale(x)), x / 255.0, rtol=1e-6)


def train_once(seed: int, rng_seed: int = 1) -> list[np.ndarray]:
    data = np.random.default_rng(rng_seed)
    x = data.integers(0, 256, size=(32, 48, 48, 1)).astype("float32")
    y = one_hot(np.arange(32) % 7, 7)
    seed_everything(seed)
    model = build_model("seed_cnn", 7, augmentation=make_augmentation(seed))
    compile_model(model, 1e-3)
    model.fit(x, y, epochs=2, batch_size=8, shuffle=True, verbose=0)
    return model.get_weights()


def test_same_seed_gives_identical_weights_on_cpu() -> None:
    first, second = train_once(7), train_once(7)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    third = train_once(8)
    assert any(not np.array_equal(a, b) for a, b in zip(first, third))


def test_saved_model_reloads_in_safe_mode_with_equal_outputs(tmp_path, rng) -> None:
    model = build_model("seed_cnn", 7, augmentation=make_augmentation(0))
    path = tmp_path / "model.keras"
    save_model(model, path)
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]  # no temporary left behind
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = rng.integers(0, 256, size=(4, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
