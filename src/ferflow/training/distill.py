"""Knowledge distillation: a trained model (the teacher) supplies soft training targets.

The student's target for each training face is

    (1 - weight) * its one-hot label + weight * the teacher's probabilities at temperature T

(`train.teacher`, `train.distill_weight`, `train.distill_temperature`). The teacher's
probabilities are computed once, before training, on the un-augmented training faces with
ten-crop averaging, so distillation costs one prediction pass before the first epoch and
nothing per step (ten predictions per training face: on a CPU, minutes for the full data set;
docs/pipeline.md has a measured figure); the student's augmentation, mixup and label
smoothing then apply as usual. A temperature
above 1 flattens the teacher's distribution (softmax(logits / T), computed from the
probabilities), which matters here because the teacher has seen these faces in training and
is over-confident on them. Any model file of this pipeline can teach, an ensemble included.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferflow.model.classifier import Classifier, load_classifier
from ferflow.model.sidecar import ModelFileError


class TeacherError(ValueError):
    """The teacher model cannot teach this run: missing, unreadable, or other classes."""


def load_teacher(path: str | Path, class_names: tuple[str, ...]) -> Classifier:
    """The teacher (a model of this pipeline with its sidecar), checked against this run's class names."""
    try:
        teacher = load_classifier(path)
    except ModelFileError as error:
        raise TeacherError(
            f"train.teacher: {error}; pass a model trained by this pipeline, "
            "or set train.teacher to '' to train without one"
        ) from None
    teacher_classes = teacher.class_names
    if tuple(teacher_classes) != tuple(class_names):
        raise TeacherError(
            f"train.teacher: '{path}' predicts {list(teacher_classes)}, but this run trains "
            f"{list(class_names)}; a teacher must name the same classes in the same order"
        )
    return teacher


def teacher_probabilities(teacher: Classifier, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The teacher's class probabilities for each face, averaged over its ten-crop views."""
    return teacher.probabilities(images, "tencrop", batch_size)


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) from probabilities: p ** (1 / T), renormalised per row."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, not {temperature}")
    logp = np.log(np.clip(np.asarray(probabilities, dtype=np.float64), 1e-12, None)) / temperature
    logp -= logp.max(axis=1, keepdims=True)
    p = np.exp(logp)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


def distillation_targets(labels: np.ndarray, teacher: np.ndarray, weight: float, temperature: float) -> np.ndarray:
    """Per-face training targets: the one-hot label mixed with the softened teacher probabilities."""
    labels = np.asarray(labels)
    if teacher.shape != (len(labels), teacher.shape[1]) or labels.max(initial=0) >= teacher.shape[1]:
        raise ValueError(f"teacher probabilities {teacher.shape} do not match {len(labels)} labels")
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight must be in [0, 1], not {weight}")
    hard = np.eye(teacher.shape[1], dtype=np.float32)[labels]
    return ((1.0 - weight) * hard + weight * soften(teacher, temperature)).astype(np.float32)


def agreement(labels: np.ndarray, teacher: np.ndarray) -> float:
    """Share of training faces whose label is the teacher's top class (how much it would relabel)."""
    return float(np.mean(np.argmax(teacher, axis=1) == np.asarray(labels)))
