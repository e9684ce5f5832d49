"""Test-split metrics, the per-sample confusion table, and inference latency."""

from __future__ import annotations

import time

import keras
import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

from ferflow.model.tta import as_model_input, view_probabilities
from ferflow.runtime import native_stderr_silenced

SMALL_SPLIT = 200  # faces; below this an accuracy is uncertain by more than about 7 points


def small_split_warning(n_faces: int, split: str = "test") -> str | None:
    """A warning when a split is too small for its accuracy to mean much, with the margin of error."""
    if n_faces >= SMALL_SPLIT:
        return None
    margin = 100 / np.sqrt(max(n_faces, 1))  # 95% interval half-width at 50% accuracy, in points
    return (
        f"warning: the {split} split has only {n_faces} faces, so its accuracy is uncertain by about "
        f"±{margin:.0f} points; use a larger source (or larger split fractions) for figures that mean something"
    )


def predict_proba(model: keras.Model, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for raw-pixel faces (native start-up logs silenced, as in training)."""
    return predict_tta(model, images, "none", 0, batch_size)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, class_names: tuple[str, ...]) -> dict:
    """Accuracy, macro and weighted P/R/F1, and per-class P/R/F1/support."""
    labels = list(range(len(class_names)))
    metrics: dict = {"accuracy": float(accuracy_score(y_true, y_pred)), "n_samples": int(len(y_true))}
    for average in ("macro", "weighted"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average, zero_division=0)
        metrics[average] = {"precision": float(p), "recall": float(r), "f1": float(f)}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=None, zero_division=0)
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


def measure_latency(
    model: keras.Model, images: np.ndarray, batch_size: int, repeats: int, warmup: int = 3
) -> dict[str, float]:
    """Milliseconds per image: single images (p50, p95) and one full batch.

    Uses `predict_on_batch`, the backend's compiled inference step, rather than
    `predict`, whose per-call set-up a deployed model does not pay for every face.
    """
    x = as_model_input(images)
    for _ in range(warmup):
        model.predict_on_batch(x[:1])
    timings = []
    for i in range(repeats):
        sample = x[i % len(x) : i % len(x) + 1]
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


# ----------------------------------------------------------------------------- calibration


def reliability_bins(probabilities: np.ndarray, y_true: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """Top-class confidence against accuracy in `bins` equal-width bins over (0, 1].

    Empty bins are kept (count 0, NaN confidence and accuracy) so the table always has `bins` rows.
    """
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == np.asarray(y_true)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds confidences in (edges[i], edges[i+1]]; a confidence of exactly 0 goes to bin 0.
    index = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        members = index == i
        count = int(members.sum())
        rows.append(
            {
                "bin_low": edges[i],
                "bin_high": edges[i + 1],
                "count": count,
                "confidence": float(confidence[members].mean()) if count else np.nan,
                "accuracy": float(correct[members].mean()) if count else np.nan,
            }
        )
    return pd.DataFrame(rows)


def calibration_metrics(probabilities: np.ndarray, y_true: np.ndarray, bins: int = 15) -> dict[str, float]:
    """Expected calibration error (`bins` equal-width bins), negative log-likelihood, Brier score.

    ECE = sum over bins of (bin size / n) * |accuracy - mean confidence|. The Brier score is the
    mean over faces of the squared distance between the probability vector and the one-hot label.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    y_true = np.asarray(y_true)
    table = reliability_bins(probabilities, y_true, bins)
    filled = table[table["count"] > 0]
    ece = float((filled["count"] / len(y_true) * (filled["accuracy"] - filled["confidence"]).abs()).sum())
    true_probability = probabilities[np.arange(len(y_true)), y_true]
    nll = float(-np.log(np.clip(true_probability, 1e-12, 1.0)).mean())
    one_hot = np.eye(probabilities.shape[1])[y_true]
    brier = float(((probabilities - one_hot) ** 2).sum(axis=1).mean())
    return {"ece": ece, "nll": nll, "brier": brier, "bins": bins}


# ----------------------------------------------------------------------------- errors


def top_confusions(counts: np.ndarray, class_names: tuple[str, ...], k: int = 8) -> pd.DataFrame:
    """The `k` largest off-diagonal cells: true class, predicted class, faces, share of the true class."""
    rows = []
    for i, true_name in enumerate(class_names):
        total = counts[i].sum()
        for j, predicted_name in enumerate(class_names):
            if i != j and counts[i, j] > 0:
                rows.append(
                    {
                        "true": true_name,
                        "predicted": predicted_name,
                        "faces": int(counts[i, j]),
                        "share_of_true": float(counts[i, j] / total),
                    }
                )
    table = pd.DataFrame(rows, columns=["true", "predicted", "faces", "share_of_true"])
    return (
        table.sort_values(["faces", "true", "predicted"], ascending=[False, True, True]).head(k).reset_index(drop=True)
    )


def misclassified(
    y_true: np.ndarray, probabilities: np.ndarray, true_class: int, predicted_class: int, limit: int
) -> np.ndarray:
    """Indices of faces of `true_class` predicted as `predicted_class`, most confident first."""
    predicted = probabilities.argmax(axis=1)
    members = np.flatnonzero((np.asarray(y_true) == true_class) & (predicted == predicted_class))
    order = np.argsort(-probabilities[members, predicted_class], kind="stable")
    return members[order][:limit]


# ----------------------------------------------------------------------------- test-time augmentation


def predict_tta(
    model: keras.Model, images: np.ndarray, mode: str, crop_size: int = 0, batch_size: int = 256
) -> np.ndarray:
    """Class probabilities averaged over the test-time views of each face (`view_probabilities`)."""
    with native_stderr_silenced():
        return view_probabilities(model.predict_on_batch, images, mode, crop_size, batch_size)


# ----------------------------------------------------------------------------- occlusion


def most_confident_correct(y_true: np.ndarray, probabilities: np.ndarray) -> dict[int, int]:
    """For each class with a correctly classified face: the index of the one predicted most confidently."""
    y_true = np.asarray(y_true)
    correct = probabilities.argmax(axis=1) == y_true
    chosen = {}
    for index in range(probabilities.shape[1]):
        members = np.flatnonzero(correct & (y_true == index))
        if len(members):
            chosen[index] = int(members[np.argmax(probabilities[members, index])])
    return chosen


def occlusion_map(
    model: keras.Model, image: np.ndarray, class_index: int, patch: int, stride: int | None = None, fill: float = 128.0
) -> np.ndarray:
    """Drop in the probability of `class_index` when a grey `patch` covers each place of the face.

    Returns a (48, 48) map: each pixel holds the mean drop over the patch positions covering it.
    Needs only predictions, so it works on every Keras backend.
    """
    face = as_model_input(np.asarray(image)[None])[0]
    size = face.shape[0]
    stride = stride or max(1, patch // 2)
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    batch, places = [], []
    for top in starts:
        for left in starts:
            occluded = face.copy()
            occluded[top : top + patch, left : left + patch] = fill
            batch.append(occluded)
            places.append((top, left))
    base = predict_proba(model, face[None])[0, class_index]
    probabilities = predict_proba(model, np.stack(batch))[:, class_index]
    total = np.zeros((size, size))
    covered = np.zeros((size, size))
    for (top, left), p in zip(places, probabilities):
        total[top : top + patch, left : left + patch] += base - p
        covered[top : top + patch, left : left + patch] += 1
    return total / np.maximum(covered, 1)


def load_model_and_data(dataset_path: str, model_path: str) -> tuple:
    """The processed splits and the trained model's handle (`ferflow.model.classifier`), checked
    against each other: the model against its sidecar, and its classes against the data's,
    in the same order. Returns (data, classifier)."""
    from ferflow.data.processed import load_processed
    from ferflow.model.classifier import load_classifier

    data = load_processed(dataset_path)
    classifier = load_classifier(model_path)
    if classifier.class_names != data.class_names:
        raise ValueError(
            f"the model's classes {list(classifier.class_names)} differ from the data's {list(data.class_names)}"
        )
    return data, classifier
