"""Test-split metrics, the per-sample confusion table, and inference latency."""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from fer.runtime import native_stderr_silenced


def as_model_input(images: np.ndarray) -> np.ndarray:
    """(n, 48, 48) uint8 -> (n, 48, 48, 1) float32 raw pixels, what every model takes."""
    images = np.asarray(images, dtype="float32")
    return images[..., None] if images.ndim == 3 else images


def predict_proba(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for raw-pixel faces (native start-up logs silenced, as in training)."""
    with native_stderr_silenced():
        return np.asarray(model.predict(as_model_input(images), batch_size=batch_size, verbose=0))


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray,
                           class_names: tuple[str, ...]) -> dict:
    """Accuracy, macro and weighted P/R/F1, and per-class P/R/F1/support."""
    labels = list(range(len(class_names)))
    metrics: dict = {"accuracy": float(accuracy_score(y_true, y_pred)), "n_samples": int(len(y_true))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        metrics[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, average=None, zero_division=0)
    metrics["per_class"] = {
        name: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, name in enumerate(class_names)
    }
    return metrics


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    return confusion_matrix(y_true, y_pred, labels=list(range(num_classes)))


def confusion_rows(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> pd.DataFrame:
    """One row per test sample, as DVC's `confusion` plot template wants."""
    names = np.asarray(class_names)
    return pd.DataFrame({"actual": names[np.asarray(y_true)], "predicted": names[np.asarray(y_pred)]})


def measure_latency(model: keras.Model, images: np.ndarray, batch_size: int,
                    repeats: int, warmup: int = 3) -> dict[str, float]:
    """Milliseconds per image: single images (p50, p95) and one full batch.

    Uses `predict_on_batch`, the backend's compiled inference step, rather than
    `predict`, whose per-call set-up a deployed model does not pay for every face.
    """
    x = as_model_input(images)
    for _ in range(warmup):
        model.predict_on_batch(x[:1])
    timings = []
    for i in range(repeats):
        sample = x[i % len(x): i % len(x) + 1]
        start = time.perf_counter()
        model.predict_on_batch(sample)
        timings.append((time.perf_counter() - start) * 1000.0)
    batch = x[:batch_size]
    model.predict_on_batch(batch)  # compile for this batch shape outside the timing
    start = time.perf_counter()
    model.predict_on_batch(batch)
    batch_ms = (time.perf_counter() - start) * 1000.0
    return {
        "single_ms_p50": float(np.percentile(timings, 50)),
        "single_ms_p95": float(np.percentile(timings, 95)),
        "batched_ms_per_image": batch_ms / len(batch),
        "batch_size": int(len(batch)),
        "batched_images_per_s": len(batch) / (batch_ms / 1000.0),
    }
