"""Resumable training state: everything needed to carry on after a kill, written atomically.

After every epoch `ResumableCheckpoint` saves the full model with its optimizer state, the
random-number states of the augmentation and dropout layers, the history, the best monitor
value and the early-stopping / LR-plateau counters. `load_resume_state` finds an unfinished
run with the same fingerprint (params, data, backend). `checkpoint_lock` keeps a second
writer out of the folder: a kernel left training by a killed `dvc` would otherwise share it.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ferflow.io import atomic_path, read_json, sha256_file, write_json

MONITOR_MODES = {"val_accuracy": "max", "val_loss": "min"}


class CheckpointBusy(RuntimeError):
    """Another process is training into the same checkpoint folder."""


def ensure_writable(directory: Path) -> None:
    """Create `directory` if needed and check that files can be written in it and beside it."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for folder in (directory, directory.parent):  # the lock file lives beside the folder
            with tempfile.TemporaryFile(dir=folder):
                pass
    except OSError as error:
        raise OSError(
            f"the checkpoint folder '{directory}' cannot be written ({error.strerror or error}); "
            f"make it and its parent writable, or remove it"
        ) from None


@contextmanager
def checkpoint_lock(directory: str | Path) -> Iterator[None]:
    """Hold an exclusive lock on `<directory>.lock` while training writes into `directory`.

    The lock is the kernel's (flock): it goes away with the process that held it, so a
    killed run leaves no stale lock behind.
    """
    lock_path = Path(f"{directory}.lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise CheckpointBusy(
                f"'{directory}' is in use by a training still running ({holder}); wait for it, or stop it "
                f"(for example a notebook kernel left behind by a killed dvc: kill that pid), then run again"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        yield
    finally:
        handle.close()


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

    def __init__(
        self,
        directory: Path,
        fingerprint: str,
        monitor: str,
        state: dict | None,
        stateful_callbacks: list[keras.callbacks.Callback],
    ) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.monitor = monitor
        self.mode = MONITOR_MODES[monitor]
        self.stateful_callbacks = stateful_callbacks
        self.state = state or {
            "fingerprint": fingerprint,
            "epochs_done": 0,
            "history": {},
            "best": None,
            "best_epoch": None,
            "callbacks": {},
            "complete": False,
        }

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
        self.state["checkpoint_bytes"] = checkpoint.stat().st_size  # checked before a resume
        self.state["checkpoint_sha256"] = sha256_file(checkpoint)
        self.state["seed_states"] = [
            keras.ops.convert_to_numpy(v.value).tolist() for v in seed_state_variables(self.model)
        ]
        self.state["callbacks"] = {
            type(c).__name__: {k: _plain(getattr(c, k)) for k in ("wait", "best", "stopped_epoch") if hasattr(c, k)}
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


def load_resume_state(directory: str | Path, fingerprint: str, epochs: int | None = None) -> dict | None:
    """The state of an unfinished run with this fingerprint, or None (then the folder is cleared).

    A finished run or another run's checkpoint starts training afresh. A damaged one (state.json
    unreadable or of the wrong shape, a checkpoint whose size or checksum differs from what was
    recorded) is said in one line, moved aside to `<directory>.bad-<time>` for inspection, and
    training starts afresh.
    """
    directory = Path(directory)
    state_path = directory / "state.json"
    state, problem = None, None
    if state_path.exists():
        try:
            state = read_json(state_path)
        except (OSError, ValueError) as error:
            problem = f"{state_path} cannot be read ({error})"
    if isinstance(state, dict) and state.get("fingerprint") == fingerprint and not state.get("complete"):
        problem = resume_problem(directory, state, epochs)
        if problem is None:
            return state
    if problem is not None:
        set_aside(directory, problem)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    return None


def resume_problem(directory: Path, state: dict, epochs: int | None) -> str | None:
    """Why the unfinished run's state cannot be resumed, or None if it can."""
    done, name = state.get("epochs_done"), state.get("checkpoint")
    if not isinstance(done, int) or isinstance(done, bool) or done < 1 or (epochs is not None and done >= epochs):
        return f"state.json says {done!r} epochs are done, which is not 1..{'' if epochs is None else epochs - 1}"
    if not isinstance(name, str) or Path(name).name != name or not (directory / name).is_file():
        return f"state.json names checkpoint {name!r}, which is not a file in {directory}"
    history = state.get("history")
    if not isinstance(history, dict) or not all(isinstance(v, list) and len(v) == done for v in history.values()):
        return f"state.json's history does not hold {done} epochs"
    if not isinstance(state.get("seed_states"), list) or not isinstance(state.get("callbacks"), dict):
        return "state.json lacks the random-number states or the callbacks' counters"
    checkpoint = directory / name
    if "checkpoint_sha256" in state:  # recorded since this check exists
        if checkpoint.stat().st_size != state.get("checkpoint_bytes"):
            return (
                f"{checkpoint} has {checkpoint.stat().st_size:,} bytes, not the "
                f"{state.get('checkpoint_bytes')!r} recorded (truncated?)"
            )
        if sha256_file(checkpoint) != state["checkpoint_sha256"]:
            return f"{checkpoint} does not match its recorded checksum (damaged?)"
    return None


def set_aside(directory: Path, problem: str) -> Path:
    """Move a damaged checkpoint folder out of the way, saying so in one line."""
    aside = directory.with_name(f"{directory.name}.bad-{time.strftime('%Y%m%d-%H%M%S')}")
    os.replace(directory, aside)
    print(f"checkpoint not resumed: {problem}; moved to {aside}, training starts afresh", flush=True)
    return aside
