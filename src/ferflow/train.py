"""Training: the recipe (optimizer, schedule, label smoothing, mixup, random erasing), the
batch generator, resumable fitting with the best checkpoint, and DVCLive logging.

Everything here is backend-agnostic Keras: plain NumPy batches through a PyDataset, and
Keras optimizers, schedules and callbacks.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ferflow.augment import Augmentation
from ferflow.io import atomic_path, read_json, write_json
from ferflow.runtime import native_stderr_silenced

MONITOR_MODES = {"val_accuracy": "max", "val_loss": "min"}


def log_history(live, history: dict[str, list[float]]) -> None:
    """Log every epoch of a (possibly resumed) run to a DVCLive `Live`, on any Keras backend.

    DVCLive's own Keras callback imports TensorFlow at module level, so it cannot load where
    Keras runs on JAX or PyTorch. Logging the whole history after fitting also covers the
    epochs a resumed run did before it was interrupted. Metrics land in
    <live dir>/plots/metrics/{train,val}/<name>.tsv (and learning_rate.tsv) for `dvc plots`.
    """
    epochs = len(next(iter(history.values()), []))
    for epoch in range(epochs):
        for name, values in sorted(history.items()):
            if name.startswith("val_"):
                live.log_metric(f"val/{name[4:]}", float(values[epoch]), timestamp=False)
            elif name in ("learning_rate", "lr"):
                live.log_metric("learning_rate", float(values[epoch]), timestamp=False)
            else:
                live.log_metric(f"train/{name}", float(values[epoch]), timestamp=False)
        live.next_step()


class EpochTimer(keras.callbacks.Callback):
    """Wall time per epoch, for throughput figures."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class LearningRateLogger(keras.callbacks.Callback):
    """Put the optimizer's current learning rate into the epoch logs (schedules included)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


# ----------------------------------------------------------------------------- recipe


def make_learning_rate(learning_rate: float, schedule: str, epochs: int, steps_per_epoch: int,
                       warmup_epochs: int) -> float | keras.optimizers.schedules.LearningRateSchedule:
    """A constant rate (cut on plateaus by a callback) or cosine decay after a linear warm-up."""
    if schedule == "plateau":
        return learning_rate
    if schedule != "cosine":
        raise ValueError(f"train.schedule = {schedule!r}: expected 'plateau' or 'cosine'")
    warmup_steps = warmup_epochs * steps_per_epoch
    decay_steps = max(1, (epochs - warmup_epochs) * steps_per_epoch)
    if warmup_steps == 0:
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.01)
    return keras.optimizers.schedules.CosineDecay(
        learning_rate / 100.0, decay_steps, alpha=0.01, warmup_target=learning_rate,
        warmup_steps=warmup_steps)


def make_optimizer(name: str, learning_rate: float | keras.optimizers.schedules.LearningRateSchedule,
                   weight_decay: float) -> keras.optimizers.Optimizer:
    """Adam, AdamW (decoupled weight decay) or SGD with Nesterov momentum 0.9."""
    decay = weight_decay or None
    if name == "adam":
        return keras.optimizers.Adam(learning_rate=learning_rate, weight_decay=decay)
    if name == "adamw":
        return keras.optimizers.AdamW(learning_rate=learning_rate, weight_decay=weight_decay)
    if name == "sgd":
        return keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9, nesterov=True,
                                    weight_decay=decay)
    raise ValueError(f"train.optimizer = {name!r}: expected 'adam', 'adamw' or 'sgd'")


def compile_model(model: keras.Model, optimizer: keras.optimizers.Optimizer | float,
                  label_smoothing: float = 0.0) -> None:
    """Cross-entropy on one-hot (possibly mixed) labels; a float optimizer means Adam at that rate."""
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        optimizer = keras.optimizers.Adam(learning_rate=float(optimizer))
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=[keras.metrics.CategoricalAccuracy(name="accuracy")],
    )


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


class TrainingBatches(keras.utils.PyDataset):
    """Shuffled training batches of raw faces, one-hot labels and per-sample loss weights.

    The cheap augmentations (random crop, flip, erasing, noise: `ferflow.augment`) and mixup are
    vectorised NumPy over the whole batch. Every random choice comes from a generator seeded
    by (seed, epoch, batch), so a resumed run sees the same batches as an uninterrupted one.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, num_classes: int, batch_size: int,
                 seed: int, class_weight: dict[int, float] | None = None, mixup_alpha: float = 0.0,
                 augmentation: Augmentation | None = None, first_epoch: int = 0) -> None:
        super().__init__(workers=1, use_multiprocessing=False)
        self.images = np.asarray(images)
        self.labels = np.asarray(labels)
        self.num_classes = num_classes
        self.batch_size = batch_size
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
        return int(np.ceil(len(self.labels) / self.batch_size))

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index, 1])
        rows = self._order[index * self.batch_size:(index + 1) * self.batch_size]
        x = self.images[rows].astype(np.float32)
        if x.ndim == 3:
            x = x[..., None]
        y = one_hot(self.labels[rows], self.num_classes)
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


# ----------------------------------------------------------------------------- resumable fit


def run_fingerprint(**parts: Any) -> str:
    """A short hash of what defines a training run: params, data hash, backend."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class ResumableCheckpoint(keras.callbacks.Callback):
    """After every epoch, save everything needed to carry on: the full model with its optimizer
    state (`epoch-N.keras`), the history, the best monitor value and the plateau/early-stopping
    counters (`state.json`), and the best weights so far (`best.weights.h5`).

    Files are written under temporary names and renamed, and state.json is written last, so a
    run killed at any moment leaves the previous epoch's consistent checkpoint.
    """

    def __init__(self, directory: Path, fingerprint: str, monitor: str, state: dict | None,
                 stateful_callbacks: list[keras.callbacks.Callback]) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.fingerprint = fingerprint
        self.monitor = monitor
        self.mode = MONITOR_MODES[monitor]
        self.stateful_callbacks = stateful_callbacks
        self.state = state or {"fingerprint": fingerprint, "epochs_done": 0, "history": {},
                               "best": None, "best_epoch": None, "callbacks": {}, "complete": False}

    def on_train_begin(self, logs: dict | None = None) -> None:
        # Runs after the other callbacks' on_train_begin (it comes last), which reset them.
        for callback in self.stateful_callbacks:
            for name, value in self.state["callbacks"].get(type(callback).__name__, {}).items():
                setattr(callback, name, value)

    def _improved(self, value: float) -> bool:
        best = self.state["best"]
        return best is None or (value > best if self.mode == "max" else value < best)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        for name, value in logs.items():
            self.state["history"].setdefault(name, []).append(float(value))
        if self._improved(float(logs[self.monitor])):
            self.state["best"], self.state["best_epoch"] = float(logs[self.monitor]), epoch
            with atomic_path(self.directory / "best.weights.h5", suffix=".weights.h5") as tmp:
                self.model.save_weights(tmp)
        checkpoint = self.directory / f"epoch-{epoch + 1}.keras"
        with atomic_path(checkpoint, suffix=".keras") as tmp:
            self.model.save(tmp)
        self.state["epochs_done"] = epoch + 1
        self.state["checkpoint"] = checkpoint.name
        self.state["seed_states"] = [keras.ops.convert_to_numpy(v.value).tolist()
                                     for v in seed_state_variables(self.model)]
        self.state["callbacks"] = {
            type(c).__name__: {k: _plain(getattr(c, k)) for k in ("wait", "best", "stopped_epoch")
                               if hasattr(c, k)}
            for c in self.stateful_callbacks
        }
        write_json(self.directory / "state.json", self.state)
        for old in self.directory.glob("epoch-*.keras"):
            if old != checkpoint:
                old.unlink()

    def on_train_end(self, logs: dict | None = None) -> None:
        self.state["complete"] = True
        write_json(self.directory / "state.json", self.state)


def seed_state_variables(model: keras.Model) -> list:
    """The random-number states of the augmentation and dropout layers, in layer order.

    A .keras file does not store them (a loaded model draws fresh ones), so a resumed run
    would augment differently from an uninterrupted one without saving them separately.
    """
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def _plain(value: Any) -> Any:
    return float(value) if isinstance(value, (np.floating, float)) else value


def load_resume_state(directory: str | Path, fingerprint: str) -> dict | None:
    """The state of an unfinished run with this fingerprint, or None (then the folder is cleared).

    A finished run, another run's checkpoint or a damaged state all start training afresh.
    """
    directory = Path(directory)
    state_path = directory / "state.json"
    try:
        state = read_json(state_path) if state_path.exists() else None
    except (OSError, ValueError):
        state = None
    if (state and state.get("fingerprint") == fingerprint and not state.get("complete")
            and (directory / state.get("checkpoint", "")).is_file()):
        return state
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return None


def training_callbacks(monitor: str, early_stopping_patience: int, schedule: str,
                       reduce_lr_patience: int, reduce_lr_factor: float) -> list[keras.callbacks.Callback]:
    """Early stopping on `monitor`, and LR cuts on its plateaus when there is no schedule."""
    mode = MONITOR_MODES[monitor]
    callbacks: list[keras.callbacks.Callback] = [
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=early_stopping_patience)]
    if schedule == "plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(
            monitor=monitor, mode=mode, factor=reduce_lr_factor, patience=reduce_lr_patience, min_lr=1e-6))
    return callbacks


def fit_resumable(model: keras.Model, batches: TrainingBatches, x_val: np.ndarray, y_val: np.ndarray,
                  epochs: int, checkpoint_dir: str | Path, fingerprint: str, monitor: str,
                  callbacks: list[keras.callbacks.Callback],
                  extra_callbacks: list[keras.callbacks.Callback] = (),
                  restore_best: bool = True) -> tuple[keras.Model, dict, int]:
    """Fit, resuming from `checkpoint_dir` if an unfinished run with this fingerprint left one.

    Returns the model with the best epoch's weights (the last epoch's with
    `restore_best=False`, as a schedule that decays to the end intends), the full history (resumed epochs
    included) and the epoch training started from (0 for a fresh run).
    `callbacks` are the stateful ones (early stopping, LR on plateau): their counters are
    saved and restored. Validation labels are class indices.
    """
    checkpoint_dir = Path(checkpoint_dir)
    state = load_resume_state(checkpoint_dir, fingerprint)
    first_epoch = 0
    if state is not None:
        model = keras.saving.load_model(checkpoint_dir / state["checkpoint"], safe_mode=True)
        for variable, value in zip(seed_state_variables(model), state["seed_states"], strict=True):
            variable.assign(np.asarray(value, dtype=variable.dtype))
        first_epoch = state["epochs_done"]
        batches.start_at_epoch(first_epoch)
    keeper = ResumableCheckpoint(checkpoint_dir, fingerprint, monitor, state, callbacks)
    x_val = np.asarray(x_val, dtype=np.float32)
    x_val = x_val[..., None] if x_val.ndim == 3 else x_val
    y_val_hot = one_hot(y_val, batches.num_classes)
    with native_stderr_silenced():
        model.fit(batches, validation_data=(x_val, y_val_hot), epochs=epochs, initial_epoch=first_epoch,
                  callbacks=[LearningRateLogger(), *callbacks, *extra_callbacks, keeper], verbose=2,
                  shuffle=False)  # the batches shuffle themselves, by seed and epoch; Keras would use global state
    if restore_best:
        model.load_weights(checkpoint_dir / "best.weights.h5")
    return model, keeper.state["history"], first_epoch


def best_epoch(history: dict[str, list[float]], monitor: str) -> int:
    """Index of the epoch the checkpoint kept: the first with the best `monitor` value."""
    values = np.asarray(history[monitor])
    return int(np.argmax(values) if MONITOR_MODES[monitor] == "max" else np.argmin(values))


def save_model(model: keras.Model, path: str | Path) -> None:
    """Save a .keras file atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
