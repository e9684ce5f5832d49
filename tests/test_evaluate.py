"""Metric functions against hand-computed values, the confusion table, latency."""

from __future__ import annotations

import numpy as np
import pytest

from fer.evaluate import classification_metrics, confusion_counts, confusion_rows, measure_latency
from fer.models import build_model

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


def test_latency_reports_positive_timings(rng) -> None:
    model = build_model("seed_cnn", 7)
    images = rng.integers(0, 256, size=(6, 48, 48)).astype(np.uint8)
    latency = measure_latency(model, images, batch_size=4, repeats=3)
    assert latency["batch_size"] == 4
    assert latency["single_ms_p95"] >= latency["single_ms_p50"] > 0
    assert latency["batched_images_per_s"] == pytest.approx(1000.0 / latency["batched_ms_per_image"])
