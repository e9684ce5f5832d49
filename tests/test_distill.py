"""Knowledge distillation: soft targets from a teacher model, checked before any training."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import save_member

from ferflow import CLASS_NAMES
from ferflow.training.distill import (
    TeacherError,
    agreement,
    distillation_targets,
    load_teacher,
    soften,
    teacher_probabilities,
)
from ferflow.training.train import TrainingBatches


def test_softening_is_softmax_of_the_logits_over_the_temperature() -> None:
    logits = np.array([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    expected = np.exp(logits / 2) / np.exp(logits / 2).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(soften(probabilities, 2.0), expected, rtol=1e-5)
    np.testing.assert_allclose(soften(probabilities, 1.0), probabilities, rtol=1e-5)
    assert soften(probabilities, 4.0).max() < soften(probabilities, 2.0).max()  # flatter as T grows
    with pytest.raises(ValueError, match="temperature"):
        soften(probabilities, 0.0)


def test_targets_mix_the_label_and_the_teacher_by_the_weight() -> None:
    teacher = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], dtype=np.float32)
    labels = np.array([1, 2])
    targets = distillation_targets(labels, teacher, weight=0.25, temperature=1.0)
    np.testing.assert_allclose(targets, 0.75 * np.eye(3)[labels] + 0.25 * teacher, rtol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(distillation_targets(labels, teacher, 0.0, 2.0), np.eye(3)[labels])
    assert agreement(labels, teacher) == 0.5  # face 2's label is the teacher's top class, face 1's is not
    with pytest.raises(ValueError, match="do not match"):
        distillation_targets(np.array([0, 1, 2]), teacher, 0.5, 1.0)


def test_batches_serve_the_soft_targets_of_their_faces() -> None:
    x = np.arange(6 * 48 * 48, dtype=np.float32).reshape(6, 48, 48) % 255
    y = np.array([0, 1, 2, 0, 1, 2])
    soft = np.random.default_rng(0).dirichlet(np.ones(3), size=6).astype(np.float32)
    batches = TrainingBatches(x, y, 3, 4, seed=0, class_weight={0: 1.0, 1: 2.0, 2: 4.0}, targets=soft)
    plain = TrainingBatches(x, y, 3, 4, seed=0, class_weight={0: 1.0, 1: 2.0, 2: 4.0})
    for index in range(len(batches)):
        xb, tb, wb = batches[index]
        xp, hot, wp = plain[index]
        rows = batches._order[index * 4 : (index + 1) * 4]
        np.testing.assert_array_equal(tb, soft[rows])  # the soft targets of the faces in the batch
        np.testing.assert_array_equal(hot, np.eye(3)[y[rows]])
        np.testing.assert_array_equal(xb, xp)
        np.testing.assert_array_equal(wb, wp)  # loss weights still follow the hard labels
    with pytest.raises(ValueError, match="targets"):
        TrainingBatches(x, y, 3, 4, seed=0, targets=soft[:5])


def test_the_teacher_predicts_ten_crop_probabilities_for_the_training_faces(tmp_path, faces) -> None:
    path = save_member(tmp_path, "teacher", 3)
    teacher = load_teacher(path, CLASS_NAMES)
    assert teacher.crop_size == 44 and teacher.runtime == "keras"
    model = teacher.model
    probabilities = teacher_probabilities(teacher, faces[..., 0])
    assert probabilities.shape == (len(faces), len(CLASS_NAMES))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    # ten-crop written out: the faces and their mirror images, each moved by 2 px (the 44 px crop's
    # margin) towards the four corners, the edge repeated
    padded = [np.pad(view, ((0, 0), (2, 2), (2, 2), (0, 0)), mode="edge") for view in (faces, faces[:, :, ::-1])]
    shifts = ((0, 0), (2, 2), (2, -2), (-2, 2), (-2, -2))
    views = [p[:, 2 - dy : 50 - dy, 2 - dx : 50 - dx] for p in padded for dy, dx in shifts]
    expected = np.mean([np.asarray(model.predict_on_batch(view.astype(np.float32))) for view in views], axis=0)
    np.testing.assert_allclose(probabilities, expected, rtol=1e-5, atol=1e-6)


def test_a_teacher_of_other_classes_or_not_a_model_is_refused(tmp_path) -> None:
    other = save_member(tmp_path, "four", 4, class_names=("happy", "neutral", "sad", "surprise"))
    with pytest.raises(TeacherError, match=r"predicts \['happy', 'neutral', 'sad', 'surprise'\], but this run"):
        load_teacher(other, CLASS_NAMES)
    not_a_model = tmp_path / "notes.keras"
    not_a_model.write_text("not a zip")
    with pytest.raises(TeacherError, match="train.teacher: '.*notes.keras' is not a Keras model file"):
        load_teacher(not_a_model, CLASS_NAMES)
    other.with_suffix(".json").unlink()
    with pytest.raises(TeacherError, match=r"train.teacher: '.*four.json' is missing"):
        load_teacher(other, CLASS_NAMES)
