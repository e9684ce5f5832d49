"""Metric functions against hand-computed values, the confusion table, latency."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from sklearn.metrics import log_loss

from ferflow.evaluation.evaluate import (
    calibration_metrics,
    classification_metrics,
    confusion_counts,
    confusion_rows,
    measure_latency,
    misclassified,
    most_confident_correct,
    occlusion_map,
    predict_tta,
    reliability_bins,
    top_confusions,
)
from ferflow.model.tta import shift_faces, tta_views, view_probabilities

NAMES = ("a", "b", "c")


def test_metrics_on_a_hand_computed_case() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    metrics = classification_metrics(y_true, y_pred, NAMES)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    # a: predicted {0, 5} -> 1 of 2 right; recall 1 of 2.  b: precision 2/3, recall 1.
    # c: precision 1, recall 1/2.
    assert metrics["per_class"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert metrics["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert metrics["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert metrics["per_class"]["c"]["f1"] == pytest.approx(2 / 3)
    assert metrics["macro"]["f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert metrics["weighted"]["recall"] == pytest.approx(4 / 6)  # weighted recall equals accuracy


def test_a_class_never_predicted_scores_zero_without_warnings() -> None:
    metrics = classification_metrics(np.array([0, 1, 2]), np.array([0, 0, 0]), NAMES)
    assert metrics["per_class"]["b"]["precision"] == 0.0
    assert metrics["per_class"]["c"]["support"] == 1


def test_confusion_rows_match_the_counts() -> None:
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = np.array([0, 2, 1, 2, 2, 1])
    rows = confusion_rows(y_true, y_pred, NAMES)
    assert list(rows.columns) == ["actual", "predicted"]
    assert len(rows) == 6
    counts = confusion_counts(y_true, y_pred, 3)
    for i, actual in enumerate(NAMES):
        for j, predicted in enumerate(NAMES):
            assert ((rows.actual == actual) & (rows.predicted == predicted)).sum() == counts[i, j]


def test_latency_times_single_faces_and_one_batch_of_a_known_slow_model(rng) -> None:
    import time

    class SlowModel:
        """Takes 5 ms a call whatever the batch, and records the batch sizes it was called with."""

        calls: list[int] = []

        def predict_on_batch(self, x):
            self.calls.append(len(x))
            time.sleep(0.005)
            return np.zeros((len(x), 7), np.float32)

    model = SlowModel()
    images = rng.integers(0, 256, size=(6, 48, 48)).astype(np.uint8)
    latency = measure_latency(model, images, batch_size=4, repeats=3, warmup=2)
    assert model.calls == [1, 1, 1, 1, 1, 4, 4]  # warm-up, the timed singles, the batch compiled then timed
    assert latency["batch_size"] == 4
    assert latency["single_ms_p95"] >= latency["single_ms_p50"] >= 5.0
    assert 5.0 / 4 <= latency["batched_ms_per_image"] < latency["single_ms_p50"]  # a batch shares its call


def test_ece_is_zero_on_a_perfectly_calibrated_toy_case() -> None:
    # 10 faces at confidence 0.7 with 7 right, 10 at 0.9 with 9 right: calibrated in every bin.
    probabilities = np.array([[0.7, 0.3]] * 10 + [[0.9, 0.1]] * 10)
    y_true = np.array([0] * 7 + [1] * 3 + [0] * 9 + [1])
    assert calibration_metrics(probabilities, y_true)["ece"] == pytest.approx(0.0, abs=1e-12)


def test_ece_nll_and_brier_on_a_hand_computed_case() -> None:
    probabilities = np.array([[0.8, 0.2], [0.6, 0.4]])
    y_true = np.array([0, 1])
    metrics = calibration_metrics(probabilities, y_true, bins=15)
    # One right at 0.8, one wrong at 0.6, in different bins: (|1 - 0.8| + |0 - 0.6|) / 2.
    assert metrics["ece"] == pytest.approx(0.4)
    assert metrics["nll"] == pytest.approx(log_loss(y_true, probabilities))
    assert metrics["brier"] == pytest.approx(((0.2**2 + 0.2**2) + (0.6**2 + 0.6**2)) / 2)


def test_reliability_bins_keep_every_bin_and_count_every_face(rng) -> None:
    probabilities = rng.dirichlet(np.ones(7), size=100)
    bins = reliability_bins(probabilities, rng.integers(0, 7, size=100), bins=15)
    assert len(bins) == 15 and bins["count"].sum() == 100
    filled = bins[bins["count"] > 0]
    assert ((filled["confidence"] > filled["bin_low"]) & (filled["confidence"] <= filled["bin_high"])).all()


def test_top_confusions_and_misclassified_faces() -> None:
    counts = np.array([[5, 3, 0], [1, 4, 0], [0, 6, 2]])
    table = top_confusions(counts, NAMES, k=2)
    assert table.to_dict("records") == [
        {"true": "c", "predicted": "b", "faces": 6, "share_of_true": 0.75},
        {"true": "a", "predicted": "b", "faces": 3, "share_of_true": 0.375},
    ]
    probabilities = np.array([[0.2, 0.7, 0.1], [0.1, 0.9, 0.0], [0.9, 0.1, 0.0], [0.3, 0.6, 0.1]])
    y_true = np.array([0, 0, 0, 1])
    np.testing.assert_array_equal(misclassified(y_true, probabilities, 0, 1, limit=5), [1, 0])


def test_the_most_confident_correct_face_of_each_class() -> None:
    probabilities = np.array([[0.6, 0.4, 0.0], [0.9, 0.1, 0.0], [0.2, 0.8, 0.0], [0.95, 0.05, 0.0]])
    y_true = np.array([0, 0, 1, 1])  # face 3 is confidently wrong; no face is class 2
    assert most_confident_correct(y_true, probabilities) == {0: 1, 1: 2}


def test_shift_moves_faces_and_repeats_edges() -> None:
    face = np.arange(48 * 48, dtype=np.float32).reshape(1, 48, 48)
    moved = shift_faces(face, 4, -4)[0, :, :, 0]
    np.testing.assert_array_equal(moved[4:, :-4], face[0, :-4, 4:])
    np.testing.assert_array_equal(moved[:4, 10], np.full(4, face[0, 0, 14]))


def test_tencrop_views_put_each_corner_crop_in_the_centre(rng) -> None:
    faces = rng.integers(0, 256, size=(2, 48, 48)).astype(np.float32)
    views = tta_views(faces, "tencrop", crop_size=40)
    assert len(views) == 10 and len(tta_views(faces, "flip", 40)) == 2 and len(tta_views(faces, "none", 40)) == 1
    centre = lambda x: x[:, 4:44, 4:44, 0]  # noqa: E731 - what the model's centre crop sees
    np.testing.assert_array_equal(centre(views[0]), faces[:, 4:44, 4:44])
    np.testing.assert_array_equal(centre(views[1]), faces[:, 0:40, 0:40])  # top-left crop
    np.testing.assert_array_equal(centre(views[4]), faces[:, 8:48, 8:48])  # bottom-right crop
    np.testing.assert_array_equal(centre(views[5]), faces[:, 4:44, 4:44][:, :, ::-1])  # flipped centre
    with pytest.raises(ValueError, match="test-time augmentation 'fivecrop'"):
        tta_views(faces, "fivecrop", 40)


def region_model() -> keras.Model:
    """A fixed model that only looks at the top-left 12x12 corner: class 1 when it is bright."""
    inputs = keras.Input((48, 48, 1))
    corner = keras.layers.Cropping2D(((0, 36), (0, 36)))(inputs)
    mean = keras.layers.GlobalAveragePooling2D()(corner)
    logits = keras.layers.Dense(
        2,
        kernel_initializer=keras.initializers.Constant([[0.0, 0.1]]),
        bias_initializer=keras.initializers.Constant([0.0, -22.0]),
    )(mean)
    return keras.Model(inputs, keras.layers.Softmax()(logits))


def test_occlusion_map_lights_up_only_where_the_model_looks() -> None:
    face = np.full((48, 48), 255.0, dtype=np.float32)
    heat = occlusion_map(region_model(), face, class_index=1, patch=8)
    assert heat.shape == (48, 48)
    assert heat[:8, :8].min() > 0.01  # covering the corner lowers the class-1 probability
    # elsewhere nothing changes, up to float32 rounding (batches of different sizes take different
    # vectorised paths on some CPUs: 6e-8 seen on an AVX2 EPYC)
    assert np.abs(heat[20:, 20:]).max() < 1e-6


def test_tta_probabilities_are_each_faces_own_mean_over_its_views() -> None:
    model = region_model()
    # Even faces look the same in every view: the mean is the face's own probability, whatever
    # the other faces of the batch are (a mix-up between faces or views would show).
    even = np.stack([np.full((48, 48), level, np.float32) for level in (40.0, 220.0, 130.0)])
    np.testing.assert_allclose(
        predict_tta(model, even, "tencrop", crop_size=40), model.predict_on_batch(even[..., None]), atol=1e-6
    )
    # A face bright in its top-left 20x20 corner only: the model looks at the 12x12 corner, and the
    # ten views move the face by 4 px (repeating its edge) and flip it, so they disagree.
    corner = np.zeros((1, 48, 48), np.float32)
    corner[0, :20, :20] = 255.0
    padded = [np.pad(view, ((0, 0), (4, 4), (4, 4)), mode="edge") for view in (corner, corner[:, :, ::-1])]
    shifts = ((0, 0), (4, 4), (4, -4), (-4, 4), (-4, -4))
    expected = np.mean(
        [model.predict_on_batch(p[:, 4 - dy : 52 - dy, 4 - dx : 52 - dx, None]) for p in padded for dy, dx in shifts],
        axis=0,
    )
    assert 0.05 < expected[0, 1] < 0.95  # some views see the bright corner and some do not
    np.testing.assert_allclose(predict_tta(model, corner, "tencrop", crop_size=40), expected, atol=1e-6)


def test_a_small_test_split_is_warned_about_with_its_margin_of_error() -> None:
    from ferflow.evaluation.evaluate import small_split_warning

    assert small_split_warning(3) == (
        "warning: the test split has only 3 faces, so its accuracy is uncertain by "
        "about ±58 points; use a larger source (or larger split fractions) for "
        "figures that mean something"
    )
    assert "±10 points" in small_split_warning(100)
    assert small_split_warning(200) is None and small_split_warning(3589) is None


@pytest.mark.parametrize("order", ["same", "reversed"])
def test_the_model_and_data_load_together_only_when_their_classes_match(model_path, tmp_path, order) -> None:
    from ferflow import CLASS_NAMES
    from ferflow.data.processed import ProcessedData, save_processed
    from ferflow.evaluation.evaluate import load_model_and_data

    names = CLASS_NAMES if order == "same" else tuple(reversed(CLASS_NAMES))
    empty = {split: np.zeros((2, 48, 48), np.uint8) for split in ("train", "val", "test")}
    labels = {split: np.zeros(2, np.int64) for split in empty}
    files = {split: np.asarray(["a.png", "b.png"]) for split in empty}
    save_processed(tmp_path / "dataset.npz", ProcessedData(empty, labels, files, names))
    if order == "same":
        data, classifier = load_model_and_data(tmp_path / "dataset.npz", model_path)
        assert classifier.class_names == CLASS_NAMES and classifier.crop_size == 44
        assert classifier.runtime == "keras" and classifier.model.output_shape == (None, 7)
        assert data.x["test"].shape == (2, 48, 48) and classifier.sidecar["class_names"] == list(CLASS_NAMES)
    else:
        with pytest.raises(ValueError, match="the model's classes .* differ from the data's"):
            load_model_and_data(tmp_path / "dataset.npz", model_path)


@pytest.mark.parametrize("mode", ["none", "flip", "tencrop"])
def test_view_probabilities_average_every_view_with_bounded_calls(mode) -> None:
    rng = np.random.default_rng(0)
    faces = rng.uniform(0, 255, (23, 48, 48)).astype(np.float32)
    weights = rng.normal(size=(48 * 48, 7)).astype(np.float32) / 500

    def softmax_of(batch: np.ndarray) -> np.ndarray:
        logits = batch.reshape(len(batch), -1) @ weights
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    calls = []

    def recorded(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return softmax_of(batch)

    expected = np.mean([softmax_of(view) for view in tta_views(faces, mode, 40)], axis=0)
    got = view_probabilities(recorded, faces, mode, 40, batch_size=30)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert max(calls) <= 30 and sum(calls) == len(faces) * len(tta_views(faces[:1], mode, 40))
    calls.clear()
    view_probabilities(recorded, faces[:1], mode, 40, batch_size=256)
    assert len(calls) == 1  # one face: one call, whatever the number of views
