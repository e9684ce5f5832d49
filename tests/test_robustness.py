"""Corruption suite: every corruption's shape, dtype, range, identity at 0 and seeding; the tables."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from ferflow import CORRUPTION_NAMES
from ferflow.evaluation.corruptions import CORRUPTIONS, contrast, corrupt, gaussian_noise, salt_and_pepper
from ferflow.evaluation.robustness import corruption_examples, robustness_table, summarise


@pytest.fixture
def faces(rng) -> np.ndarray:
    return rng.integers(0, 256, size=(6, 48, 48)).astype(np.uint8)


def test_params_know_exactly_the_corruptions() -> None:
    assert tuple(CORRUPTIONS) == CORRUPTION_NAMES


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_has_three_severities_and_keeps_shape_dtype_range(name, faces) -> None:
    levels = CORRUPTIONS[name].levels
    assert len(levels) >= 3 and list(levels) == sorted(levels)
    for severity in range(1, len(levels) + 1):
        out = corrupt(faces, name, severity, seed=0)
        assert out.shape == faces.shape
        assert out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 255.0
        assert not np.array_equal(out, faces)  # it does something at every severity
    with_channel = corrupt(faces[..., None], name, 2, seed=0)
    assert with_channel.shape == faces.shape + (1,)


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_at_severity_zero_is_the_identity(name, faces) -> None:
    np.testing.assert_array_equal(corrupt(faces, name, 0, seed=0), faces.astype(np.float32))
    np.testing.assert_array_equal(
        CORRUPTIONS[name].function(faces, 0.0, np.random.default_rng(0)), faces.astype(np.float32)
    )


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_each_corruption_is_deterministic_given_the_seed(name, faces) -> None:
    np.testing.assert_array_equal(corrupt(faces, name, 2, seed=5), corrupt(faces, name, 2, seed=5))


@pytest.mark.parametrize("name", ["gaussian_noise", "salt_and_pepper", "random_patch", "rotation", "horizontal_shift"])
def test_random_corruptions_differ_with_another_seed(name, faces) -> None:
    assert not np.array_equal(corrupt(faces, name, 2, seed=5), corrupt(faces, name, 2, seed=6))


def test_severity_outside_the_levels_and_unknown_names_are_refused(faces) -> None:
    with pytest.raises(ValueError, match="severity 4 outside 0..3"):
        corrupt(faces, "jpeg", 4, seed=0)
    with pytest.raises(ValueError, match="unknown corruption 'fog'"):
        corrupt(faces, "fog", 1, seed=0)


def test_noise_strength_follows_sigma() -> None:
    grey = np.full((20, 48, 48), 128, dtype=np.uint8)  # mid-grey: clipping is negligible
    for sigma in (0.05, 0.1):
        measured = (gaussian_noise(grey, sigma, np.random.default_rng(0)) / 255.0 - 128 / 255.0).std()
        assert measured == pytest.approx(sigma, rel=0.05)


def test_salt_and_pepper_hits_the_requested_fraction() -> None:
    grey = np.full((20, 48, 48), 128, dtype=np.uint8)
    out = salt_and_pepper(grey, 0.1, np.random.default_rng(0))
    assert (out != 128).mean() == pytest.approx(0.1, rel=0.1)
    assert set(np.unique(out)) == {0.0, 128.0, 255.0}


def test_contrast_keeps_the_mean_and_shrinks_the_spread(faces) -> None:
    out = contrast(faces, 0.5, np.random.default_rng(0))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), faces.mean(axis=(1, 2)), rtol=1e-4)
    np.testing.assert_allclose(out.std(axis=(1, 2)), faces.std(axis=(1, 2)) * 0.5, rtol=1e-4)


def test_eye_band_covers_the_eyes_and_mouth_band_the_mouth(faces) -> None:
    eyes = corrupt(faces, "eye_occlusion", 2, seed=0)
    mouth = corrupt(faces, "mouth_occlusion", 2, seed=0)
    assert (eyes[:, 18] == 128).all() and (eyes[:, 40] == faces[:, 40]).all()
    assert (mouth[:, 37] == 128).all() and (mouth[:, 18] == faces[:, 18]).all()


LABELS = np.array([0, 0, 1, 1])  # two classes, two faces each; the pixels do not matter
BLANK_FACES = np.zeros((4, 48, 48), dtype=np.float32)


def scripted_model(answers: list[np.ndarray], calls: list) -> Callable[[np.ndarray], np.ndarray]:
    """A predict function that gives answers[i] at its i-th call (clean first, then each severity)."""

    def predict(batch: np.ndarray) -> np.ndarray:
        calls.append(batch)
        return answers[min(len(calls), len(answers)) - 1]

    return predict


def test_robustness_table_and_summary_on_a_hand_computed_case() -> None:
    calls: list = []
    # Clean: all right. Corrupted: the first face of each class wrong.
    predict = scripted_model([LABELS.copy(), np.array([1, 0, 0, 1])], calls)
    table = robustness_table(predict, BLANK_FACES, LABELS, ["brightness", "jpeg"], seed=0)
    assert len(table) == 2 * 4 and len(calls) == 1 + 2 * 3  # clean measured once
    assert table[table.severity == 0].accuracy.tolist() == [1.0, 1.0]
    assert table[table.severity > 0].accuracy.tolist() == [0.5] * 6
    assert table[table.severity > 0].relative_drop.tolist() == [0.5] * 6
    summary = summarise(table, ("angry", "happy"))
    assert summary["clean_accuracy"] == 1.0 and summary["mean_corruption_accuracy"] == 0.5
    assert summary["per_class_sensitivity"] == {"angry": 0.5, "happy": 0.5}
    assert summary["per_corruption"]["jpeg"] == {"severity_1": 0.5, "severity_2": 0.5, "severity_3": 0.5}
    assert "gaussian_noise" not in summary  # reported only when measured


def test_summary_reports_the_noise_drop_per_sigma() -> None:
    # Clean: all right; then one, two and three faces wrong as the noise grows.
    answers = [np.where(np.arange(4) < wrong, 1 - LABELS, LABELS) for wrong in range(4)]
    table = robustness_table(scripted_model(answers, []), BLANK_FACES, LABELS, ["gaussian_noise"], seed=0)
    noise = summarise(table, ("angry", "happy"))["gaussian_noise"]
    sigmas = [f"sigma_{level:g}" for level in CORRUPTIONS["gaussian_noise"].levels]
    assert list(noise) == sigmas
    assert [noise[s]["accuracy"] for s in sigmas] == [0.75, 0.5, 0.25]
    assert [noise[s]["drop"] for s in sigmas] == [0.25, 0.5, 0.75]


def test_corruption_examples_show_one_face_at_every_severity(faces) -> None:
    examples = corruption_examples(faces[0], ["gaussian_noise", "jpeg"], seed=0)
    assert list(examples) == ["gaussian_noise", "jpeg"]
    assert len(examples["jpeg"]) == len(CORRUPTIONS["jpeg"].levels) + 1
    np.testing.assert_array_equal(examples["gaussian_noise"][0], faces[0].astype(np.float32))  # clean
    assert not np.array_equal(examples["gaussian_noise"][3], examples["gaussian_noise"][0])
