"""Following a training as it runs: one progress line per epoch, per-epoch DVCLive logging,
epoch timings. Backend-agnostic Keras callbacks."""

from __future__ import annotations

import time

import keras


class EpochProgress(keras.callbacks.Callback):
    """One line per epoch on stdout: epoch, losses, accuracies, learning rate, time, ETA.

    `papermill --log-output` (used by `python -m ferflow.pipeline.stage run`) streams it to the terminal.
    """

    def __init__(self, epochs: int) -> None:
        super().__init__()
        self.epochs = epochs

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = time.perf_counter()
        if not hasattr(self, "_seconds"):
            self._seconds: list[float] = []

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        seconds = time.perf_counter() - self._start
        self._seconds.append(seconds)
        logs = logs or {}
        left = (self.epochs - epoch - 1) * sum(self._seconds) / len(self._seconds)
        values = "  ".join(
            f"{name} {logs[name]:.4g}"
            for name in ("loss", "accuracy", "val_loss", "val_accuracy", "learning_rate")
            if name in logs
        )
        print(f"epoch {epoch + 1}/{self.epochs}  {values}  {seconds:.1f} s  ETA {left / 60:.1f} min", flush=True)


class LearningRateLogger(keras.callbacks.Callback):
    """Put the optimizer's current learning rate into the epoch logs (schedules included)."""

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if logs is not None:
            optimizer = self.model.optimizer
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))


# ----------------------------------------------------------------------------- recipe


class LiveLogger(keras.callbacks.Callback):
    """Log every epoch to a DVCLive `Live` as it ends, so `dvc exp show` and `dvc plots show`
    follow a run in progress. A resumed run first logs the epochs it did before.

    DVCLive's own Keras callback imports TensorFlow at module level, so it cannot load where
    Keras runs on JAX or PyTorch. Metrics land in <live dir>/plots/metrics/{train,val}/<name>.tsv
    (and learning_rate.tsv) for `dvc plots`.
    """

    def __init__(self, live, earlier_history: dict[str, list[float]] | None = None) -> None:
        super().__init__()
        self.live = live
        self.earlier_history = earlier_history or {}

    def on_train_begin(self, logs: dict | None = None) -> None:
        epochs = len(next(iter(self.earlier_history.values()), []))
        for epoch in range(epochs):
            self._log({name: values[epoch] for name, values in self.earlier_history.items()})

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._log(logs or {})

    def _log(self, logs: dict[str, float]) -> None:
        for name, value in sorted(logs.items()):
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
