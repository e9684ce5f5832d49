"""The training recipe: the model, its optimizer, learning-rate schedule and loss, and the
batches, assembled from the checked `train` params in one place (`build_training`), which the
train notebook, the benchmarks and the tests all use.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from ferflow.model.registry import build_model, make_augmentation
from ferflow.runtime import data_parallel_devices, seed_everything
from ferflow.training.augment import Augmentation
from ferflow.training.train import TrainingBatches


@dataclass
class Training:
    """What `build_training` assembles: a compiled model and its training batches."""

    model: keras.Model
    batches: TrainingBatches
    augmentation: Augmentation


def build_training(
    p,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    class_weight: dict[int, float] | None = None,
    targets: np.ndarray | None = None,
) -> Training:
    """The model and batches for checked train params `p` (`ferflow.pipeline.params.check("train", ...)`),
    seeded by `p.seed`: the architecture (with the geometric layers if asked), the NumPy
    augmentation, mixup, the optimizer and schedule over `p.epochs`, label smoothing."""
    seed_everything(p.seed)
    geometric = make_augmentation(p.seed) if p.geometric_augment else None
    model = build_model(
        p.arch,
        num_classes,
        augmentation=geometric,
        crop_size=p.crop_size,
        weights=None if p.weights == "none" else p.weights,
    )
    augmentation = Augmentation(
        crop_size=p.crop_size,
        flip=p.flip,
        erasing=p.random_erasing,
        noise=p.noise_augment,
        noise_max_sigma=p.noise_max_sigma,
    )
    batches = TrainingBatches(
        images,
        labels,
        num_classes,
        p.batch_size,
        p.seed,
        class_weight=class_weight,
        mixup_alpha=p.mixup_alpha,
        augmentation=augmentation,
        targets=targets,
        multiple_of=data_parallel_devices(),
    )
    learning_rate = make_learning_rate(p.learning_rate, p.schedule, p.epochs, len(batches), p.warmup_epochs)
    compile_model(model, make_optimizer(p.optimizer, learning_rate, p.weight_decay), p.label_smoothing)
    return Training(model, batches, augmentation)


def make_learning_rate(
    learning_rate: float, schedule: str, epochs: int, steps_per_epoch: int, warmup_epochs: int
) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A constant rate (cut on plateaus by a callback) or cosine decay after a linear warm-up."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}: expected one of {sorted(SCHEDULES)}")
    return SCHEDULES[schedule](learning_rate, epochs, steps_per_epoch, warmup_epochs)


def constant_rate(learning_rate: float, epochs: int, steps_per_epoch: int, warmup_epochs: int) -> float:
    return learning_rate  # the train stage's ReduceLROnPlateau cuts it


def cosine_rate(
    learning_rate: float, epochs: int, steps_per_epoch: int, warmup_epochs: int
) -> keras.optimizers.schedules.LearningRateSchedule:
    warmup_steps = warmup_epochs * steps_per_epoch
    decay_steps = max(1, (epochs - warmup_epochs) * steps_per_epoch)
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.01)
    return keras.optimizers.schedules.CosineDecay(
        learning_rate / 100.0, decay_steps, alpha=0.01, warmup_target=learning_rate, warmup_steps=warmup_steps
    )


SCHEDULES = {"plateau": constant_rate, "cosine": cosine_rate}  # train.schedule: its learning rate

# train.optimizer: its builder from (learning rate, weight decay)
OPTIMIZERS = {
    "adam": lambda rate, decay: keras.optimizers.Adam(learning_rate=rate, weight_decay=decay or None),
    "adamw": lambda rate, decay: keras.optimizers.AdamW(learning_rate=rate, weight_decay=decay),
    "sgd": lambda rate, decay: keras.optimizers.SGD(
        learning_rate=rate, momentum=0.9, nesterov=True, weight_decay=decay or None
    ),
}


def make_optimizer(
    name: str, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule, weight_decay: float
) -> keras.optimizers.Optimizer:
    """Adam, AdamW (decoupled weight decay) or SGD with Nesterov momentum 0.9."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}: expected one of {sorted(OPTIMIZERS)}")
    return OPTIMIZERS[name](learning_rate, weight_decay)


def compile_model(
    model: keras.Model, optimizer: keras.optimizers.Optimizer | float, label_smoothing: float = 0.0
) -> None:
    """Cross-entropy on one-hot (possibly mixed) labels; a float optimizer means Adam at that rate."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = keras.optimizers.Adam(learning_rate=float(optimizer))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


CLASS_WEIGHTINGS = {"none": None, "sqrt": 0.5, "balanced": 1.0}  # train.class_weights: the power of the balance


def loss_weights(
    balanced: dict[str, float], class_names: tuple[str, ...], mode: str, train_labels: np.ndarray
) -> dict[int, float] | None:
    """Per-class loss weights by class index: none, balanced (n / (k * n_c)), or their square root.

    The square root is a milder balance: a rare class weighs more without the large loss
    spikes that full balancing gives a class 1.5% the size. Weights are scaled so that their
    mean over the training faces is 1, which keeps the learning rate's meaning.
    """
    if mode not in CLASS_WEIGHTINGS:
        raise ValueError(f"unknown class weighting {mode!r}: expected one of {sorted(CLASS_WEIGHTINGS)}")
    power = CLASS_WEIGHTINGS[mode]
    if power is None:
        return None
    weights = np.array([balanced[name] ** power for name in class_names])
    weights /= weights[np.asarray(train_labels)].mean()
    return {i: float(w) for i, w in enumerate(weights)}
