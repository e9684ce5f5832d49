"""Training: the batch generator (with the augmentations of `ferflow.training.augment` and
mixup) and resumable fitting.

The recipe (model, optimizer, schedule, loss) is assembled by `ferflow.training.recipe`,
checkpoint state lives in `ferflow.training.checkpoint`, progress and DVCLive logging in
`ferflow.training.tracking`.

Everything here is backend-agnostic Keras: plain NumPy batches through a PyDataset, and
Keras optimizers, schedules and callbacks.
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from ferflow.runtime import native_stderr_silenced
from ferflow.training.augment import Augmentation
from ferflow.training.checkpoint import (
    MONITOR_MODES,
    ResumableCheckpoint,
    checkpoint_lock,
    ensure_writable,
    load_resume_state,
    seed_state_variables,
    set_aside,
)
from ferflow.training.tracking import EpochProgress, LearningRateLogger, LiveLogger


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled training batches of raw faces, targets and per-sample loss weights.

    Targets are the one-hot labels, or per-face soft targets when `targets` is given (knowledge
    distillation: `ferflow.training.distill`); loss weights always follow the hard labels.

    The cheap augmentations (random crop, flip, erasing, noise: `ferflow.training.augment`) and mixup are
    vectorised NumPy over the whole batch. Every random choice comes from a generator seeded
    by (seed, epoch, batch), so a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        num_classes: int,
        batch_size: int,
        seed: int,
        class_weight: dict[int, float] | None = None,
        mixup_alpha: float = 0.0,
        augmentation: Augmentation | None = None,
        first_epoch: int = 0,
        targets: np.ndarray | None = None,
        multiple_of: int = 1,
    ) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = np.asarray(images)
        self.labels = np.asarray(labels)
        self.num_classes = num_classes
        if targets is not None and np.shape(targets) != (len(self.labels), num_classes):
            raise ValueError(
                f"targets {np.shape(targets)} do not match {len(self.labels)} faces x {num_classes} classes"
            )
        self.targets = one_hot(self.labels, num_classes) if targets is None else np.asarray(targets, np.float32)
        self.batch_size = batch_size
        if multiple_of < 1 or batch_size % multiple_of:
            raise ValueError(
                f"train.batch_size = {batch_size} must be a multiple of the {multiple_of} devices it is split over"
            )
        # Data-parallel training splits every batch evenly over the devices: the last, short
        # batch is cut to a multiple of them (at most multiple_of - 1 faces, different each epoch).
        self.multiple_of = multiple_of
        self.seed = seed
        weights = np.ones(num_classes, dtype=np.float32)
        for c, w in (class_weight or {}).items():
            weights[c] = w
        self.sample_weights = weights[self.labels]
        self.mixup_alpha = mixup_alpha
        self.augmentation = augmentation
        self.start_at_epoch(first_epoch)

    def start_at_epoch(self, epoch: int) -> None:
        """Serve the batches of `epoch` next (shuffled by seed and epoch alone)."""
        self.epoch = epoch
        self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))

    def __len__(self) -> int:
        full, rest = divmod(len(self.labels), self.batch_size)
        return full + (rest >= self.multiple_of)

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        rows = self._order[index * self.batch_size : (index + 1) * self.batch_size]
        rows = rows[: len(rows) - len(rows) % self.multiple_of]
        x = self.images[rows].astype(np.float32)
        if x.ndim == 3:
            x = x[..., None]
        y = self.targets[rows]
        w = self.sample_weights[rows]
        if self.augmentation is not None:
            x = self.augmentation(x, rng)
        if self.mixup_alpha > 0:
            lam = np.float32(rng.beta(self.mixup_alpha, self.mixup_alpha))
            partner = rng.permutation(len(rows))
            x = lam * x + (1 - lam) * x[partner]
            y = lam * y + (1 - lam) * y[partner]
            w = lam * w + (1 - lam) * w[partner]
        return x, y, w.astype(np.float32)

    def on_epoch_end(self) -> None:
        self.start_at_epoch(self.epoch + 1)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite: nothing trained after that point is usable."""


class StopOnNonFiniteLoss(keras.callbacks.Callback):
    """Fail the run, naming the learning rate, when a batch's loss is not finite.

    Keras's TerminateOnNaN would end `fit` normally, and a NaN model would be saved and
    evaluated. Raising instead also keeps the diverged epoch out of the checkpoint, so the
    last saved state is the last sound one.
    """

    def __init__(self) -> None:
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self.epoch = epoch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise TrainingDiverged(
                f"training diverged: the loss became {float(loss)} in epoch {self.epoch + 1}, "
                f"batch {batch + 1}; lower train.learning_rate and run again"
            )


def training_callbacks(
    monitor: str, early_stopping_patience: int, schedule: str, reduce_lr_patience: int, reduce_lr_factor: float
) -> list[keras.callbacks.Callback]:
    """Early stopping on `monitor`, and LR cuts on its plateaus when there is no schedule."""
    mode = MONITOR_MODES[monitor]
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=early_stopping_patience)
    ]
    if schedule == "plateau":
        callbacks.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor=monitor, mode=mode, factor=reduce_lr_factor, patience=reduce_lr_patience, min_lr=1e-6
            )
        )
    return callbacks


def fit_resumable(
    model: keras.Model,
    batches: TrainingBatches,
    x_val: np.ndarray,
    y_val: np.ndarray,
    epochs: int,
    checkpoint_dir: str | Path,
    fingerprint: str,
    monitor: str,
    callbacks: list[keras.callbacks.Callback],
    extra_callbacks: list[keras.callbacks.Callback] = (),
    restore_best: bool = True,
    live=None,
) -> tuple[keras.Model, dict, int]:
    """Fit, resuming from `checkpoint_dir` if an unfinished run with this fingerprint left one.

    Prints one progress line per epoch, and logs each epoch to the DVCLive `live` (if given)
    as it ends, after the epochs of the interrupted run when resuming. A lock keeps a second
    training out of `checkpoint_dir` (`CheckpointBusy`).

    Returns the model with the best epoch's weights (the last epoch's with
    `restore_best=False`, as a schedule that decays to the end intends), the full history (resumed epochs
    included) and the epoch training started from (0 for a fresh run).
    `callbacks` are the stateful ones (early stopping, LR on plateau): their counters are
    saved and restored. Validation labels are class indices.
    """
    checkpoint_dir = Path(checkpoint_dir)
    ensure_writable(checkpoint_dir)
    with checkpoint_lock(checkpoint_dir):
        model, state = _resumed(model, checkpoint_dir, fingerprint, epochs)
        first_epoch = state["epochs_done"] if state else 0
        if state:
            batches.start_at_epoch(first_epoch)
        keeper = ResumableCheckpoint(checkpoint_dir, fingerprint, monitor, state, callbacks)
        x_val = np.asarray(x_val, dtype=np.float32)
        x_val = x_val[..., None] if x_val.ndim == 3 else x_val
        y_val_hot = one_hot(y_val, batches.num_classes)
        if batches.multiple_of > 1:  # validation batches are split over the devices too: the same cut
            kept = len(x_val) - len(x_val) % batches.multiple_of
            x_val, y_val_hot = x_val[:kept], y_val_hot[:kept]
        followers = [EpochProgress(epochs)]
        if live is not None:
            followers.append(LiveLogger(live, state["history"] if state else None))
        with native_stderr_silenced():
            model.fit(
                batches,
                validation_data=(x_val, y_val_hot),
                # split over the devices, each validation batch must divide evenly too
                validation_batch_size=batches.batch_size if batches.multiple_of > 1 else None,
                epochs=epochs,
                initial_epoch=first_epoch,
                callbacks=[
                    StopOnNonFiniteLoss(),
                    LearningRateLogger(),
                    *callbacks,
                    *extra_callbacks,
                    keeper,
                    *followers,
                ],
                verbose=0,
                shuffle=False,
            )  # the batches shuffle themselves, by seed and epoch; Keras would use global state
        if restore_best:
            model.load_weights(checkpoint_dir / "best.weights.h5")
        return model, keeper.state["history"], first_epoch


def _resumed(
    model: keras.Model, checkpoint_dir: Path, fingerprint: str, epochs: int
) -> tuple[keras.Model, dict | None]:
    """The model and resume state of an unfinished run in `checkpoint_dir`, or `model` and None.

    A checkpoint that does not load is set aside (as a damaged one is by `load_resume_state`),
    and training starts afresh.
    """
    state = load_resume_state(checkpoint_dir, fingerprint, epochs)
    if state is None:
        return model, None
    try:
        resumed = keras.saving.load_model(checkpoint_dir / state["checkpoint"], safe_mode=True)
    except Exception as error:  # noqa: BLE001 - a damaged file that no checksum recorded
        set_aside(checkpoint_dir, f"{checkpoint_dir / state['checkpoint']} does not load ({type(error).__name__})")
        checkpoint_dir.mkdir(parents=True)
        return model, None
    for variable, value in zip(seed_state_variables(resumed), state["seed_states"], strict=True):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return resumed, state


def best_epoch(history: dict[str, list[float]], monitor: str) -> int:
    """Index of the epoch the checkpoint kept: the first with the best `monitor` value."""
    values = np.asarray(history[monitor])
    return int(np.argmax(values) if MONITOR_MODES[monitor] == "max" else np.argmin(values))
