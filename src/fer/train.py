"""Training: compile, callbacks (early stopping, LR on plateau, best checkpoint), DVCLive logging."""

from __future__ import annotations

import time
from pathlib import Path

import keras
import numpy as np

from fer.io import atomic_path
from fer.runtime import native_stderr_silenced


class LiveLogger(keras.callbacks.Callback):
    """Log per-epoch metrics to a DVCLive `Live`, on any Keras backend.

    DVCLive's own Keras callback imports TensorFlow at module level, so it cannot load
    where Keras runs on JAX or PyTorch; this one only calls `Live.log_metric`.
    Metrics land in <live dir>/plots/metrics/{train,val}/<name>.tsv for `dvc plots`.
    """

    def __init__(self, live) -> None:
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in sorted((logs or {}).items()):
            if name.startswith("val_"):
                self.live.log_metric(f"val/{name[4:]}", float(value), timestamp=False)
            elif name in ("learning_rate", "lr"):
                self.live.log_metric("learning_rate", float(value), timestamp=False)
            else:
                self.live.log_metric(f"train/{name}", float(value), timestamp=False)
        self.live.next_step()


class EpochTimer(keras.callbacks.Callback):
    """Wall time per epoch, for throughput figures."""

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def compile_model(model: keras.Model, learning_rate: float) -> None:
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )


MONITOR_MODES = {"val_accuracy": "max", "val_loss": "min"}


def standard_callbacks(checkpoint_path: str | Path, monitor: str, early_stopping_patience: int,
                       reduce_lr_patience: int, reduce_lr_factor: float) -> list[keras.callbacks.Callback]:
    """Best checkpoint, early stopping and LR reduction on a plateau, all on `monitor`."""
    mode = MONITOR_MODES[monitor]
    return [
        keras.callbacks.ModelCheckpoint(str(checkpoint_path), monitor=monitor, mode=mode,
                                        save_best_only=True, save_weights_only=True),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=early_stopping_patience),
        keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, factor=reduce_lr_factor,
                                          patience=reduce_lr_patience, min_lr=1e-6),
    ]


def fit(model: keras.Model, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
        y_val: np.ndarray, epochs: int, batch_size: int,
        class_weight: dict[int, float] | None, callbacks: list) -> keras.callbacks.History:
    """Train on plain arrays of raw pixels (n, 48, 48, 1); shuffling follows the Keras seed.

    TensorFlow 2.21 logs a harmless op-definition mismatch from native code for every input
    pipeline Keras 3.15 builds; it is kept out of the report. Python output is untouched.
    """
    with native_stderr_silenced():
        return model.fit(
            x_train.astype("float32"), y_train, validation_data=(x_val.astype("float32"), y_val),
            epochs=epochs, batch_size=batch_size, class_weight=class_weight, shuffle=True,
            callbacks=callbacks, verbose=2,
        )


def best_epoch(history: dict[str, list[float]], monitor: str) -> int:
    """Index of the epoch the checkpoint kept: the first with the best `monitor` value."""
    values = np.asarray(history[monitor])
    return int(np.argmax(values) if MONITOR_MODES[monitor] == "max" else np.argmin(values))


def save_model(model: keras.Model, path: str | Path) -> None:
    """Save a .keras file atomically."""
    with atomic_path(path, suffix=".keras") as tmp:
        model.save(tmp)
