"""Training: recipe pieces, the batch generator, DVCLive logging, and resuming after a kill."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
from conftest import REPO
from dvclive import Live

from ferflow.training.checkpoint import CheckpointBusy, checkpoint_lock, load_resume_state
from ferflow.training.recipe import loss_weights, make_learning_rate, make_optimizer
from ferflow.training.tracking import EpochProgress, LiveLogger
from ferflow.training.train import TrainingBatches, best_epoch, one_hot


def test_best_epoch_follows_the_monitor_direction() -> None:
    history = {"val_accuracy": [0.2, 0.5, 0.4], "val_loss": [1.0, 0.9, 0.7]}
    assert best_epoch(history, "val_accuracy") == 1
    assert best_epoch(history, "val_loss") == 2


def test_each_epoch_is_logged_for_dvc_plots_as_it_ends_after_the_resumed_ones(tmp_path) -> None:
    history = {
        "loss": [2.0, 1.5],
        "accuracy": [0.2, 0.3],
        "val_loss": [2.1, 1.9],
        "val_accuracy": [0.1, 0.25],
        "learning_rate": [1e-3, 5e-4],
    }
    live_dir = tmp_path / "live"
    with Live(str(live_dir), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        logger = LiveLogger(live, earlier_history={name: values[:1] for name, values in history.items()})
        logger.on_train_begin()  # a run resumed after epoch 1: epoch 1 comes from the checkpoint
        logger.on_epoch_end(1, {name: values[1] for name, values in history.items()})
        # Written as the epoch ends, before the run is over: what `dvc plots show` reads mid-run.
        rows = (live_dir / "plots" / "metrics" / "val" / "accuracy.tsv").read_text().splitlines()
        assert len(rows) == 3
        assert json.loads((live_dir / "metrics.json").read_text())["step"] == 1
    for split in ("train", "val"):
        for metric in ("loss", "accuracy"):
            rows = (tmp_path / "live" / "plots" / "metrics" / split / f"{metric}.tsv").read_text().splitlines()
            assert rows[0] == f"step\t{metric}"
            key = metric if split == "train" else f"val_{metric}"
            assert [float(r.split("\t")[1]) for r in rows[1:]] == history[key]
            assert [int(r.split("\t")[0]) for r in rows[1:]] == [0, 1]


def test_cosine_schedule_warms_up_then_decays_to_one_percent() -> None:
    schedule = make_learning_rate(0.01, "cosine", epochs=10, steps_per_epoch=5, warmup_epochs=2)
    rate = lambda step: float(keras.ops.convert_to_numpy(schedule(step)))  # noqa: E731
    assert rate(0) == pytest.approx(1e-4)
    assert rate(10) == pytest.approx(0.01)  # the end of the warm-up is the peak
    assert rate(5) < rate(10) and rate(30) < rate(10)
    assert rate(50) == pytest.approx(1e-4, rel=1e-3)  # alpha 0.01 of the peak at the end
    assert make_learning_rate(0.01, "plateau", 10, 5, 2) == 0.01


def test_optimizers_and_weight_decay() -> None:
    sgd = make_optimizer("sgd", 0.1, 5e-4)
    assert isinstance(sgd, keras.optimizers.SGD) and sgd.nesterov and sgd.momentum == 0.9
    assert sgd.weight_decay == 5e-4
    assert isinstance(make_optimizer("adamw", 1e-3, 0.05), keras.optimizers.AdamW)
    assert make_optimizer("adam", 1e-3, 0.0).weight_decay is None
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", 1e-3, 0.0)


def test_batches_cover_every_face_once_per_epoch_and_depend_only_on_seed_and_epoch(rng) -> None:
    x = np.arange(10)[:, None, None] * np.ones((10, 48, 48), dtype=np.uint8)  # face i is all i
    y = np.arange(10) % 3
    batches = TrainingBatches(x, y, 3, batch_size=4, seed=1)
    assert len(batches) == 3
    seen = np.concatenate([batches[i][0][:, 0, 0, 0] for i in range(3)])
    assert sorted(seen) == list(range(10))
    first = [batches[i][0] for i in range(3)]
    batches.on_epoch_end()
    second = [batches[i][0] for i in range(3)]
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))  # reshuffled
    again = TrainingBatches(x, y, 3, batch_size=4, seed=1, first_epoch=1)
    for a, b in zip(second, [again[i][0] for i in range(3)]):
        np.testing.assert_array_equal(a, b)


def test_batches_carry_class_weights_and_mixup_keeps_labels_summing_to_one(rng) -> None:
    x = rng.integers(0, 256, size=(12, 48, 48)).astype(np.uint8)
    y = np.arange(12) % 3
    plain = TrainingBatches(x, y, 3, 12, seed=0, class_weight={0: 1.0, 1: 2.0, 2: 4.0})
    images, labels, weights = plain[0]
    assert images.shape == (12, 48, 48, 1) and images.dtype == np.float32
    np.testing.assert_array_equal(weights, np.array([1.0, 2.0, 4.0])[labels.argmax(axis=1)])
    mixed = TrainingBatches(x, y, 3, 12, seed=0, class_weight={0: 1.0, 1: 2.0, 2: 4.0}, mixup_alpha=0.4)
    images, labels, weights = mixed[0]
    np.testing.assert_allclose(labels.sum(axis=1), 1.0, rtol=1e-6)
    assert not set(np.unique(labels)) <= {0.0, 1.0}  # soft labels
    assert weights.min() >= 1.0 and weights.max() <= 4.0
    assert images.min() >= 0 and images.max() <= 255


def test_progress_prints_one_line_per_epoch_with_time_and_eta(capsys) -> None:
    progress = EpochProgress(epochs=3)
    for epoch in range(2):
        progress.on_epoch_begin(epoch)
        progress.on_epoch_end(epoch, {"loss": 1.5, "val_accuracy": 0.25, "learning_rate": 0.01})
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("epoch 1/3  loss 1.5  val_accuracy 0.25  learning_rate 0.01")
    assert "ETA" in lines[1] and lines[1].startswith("epoch 2/3")


def test_a_second_writer_of_a_checkpoint_folder_is_stopped(tmp_path) -> None:
    folder = tmp_path / "checkpoints"
    with checkpoint_lock(folder):
        code = (
            "import sys; from ferflow.training.checkpoint import CheckpointBusy, checkpoint_lock\n"
            f"try:\n    checkpoint_lock({str(folder)!r}).__enter__()\n"
            "except CheckpointBusy as error:\n    print(error); sys.exit(3)\n"
        )
        other = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        assert other.returncode == 3, other.stderr
        assert "in use by a training still running (pid" in other.stdout
    with checkpoint_lock(folder):  # free again once the holder is done
        pass
    with pytest.raises(CheckpointBusy):  # in one process too: the lock is per open file
        with checkpoint_lock(folder), checkpoint_lock(folder):
            pass


def test_loss_weights_none_sqrt_and_balanced_average_one_over_the_training_faces() -> None:
    labels = np.array([0] * 90 + [1] * 10)
    balanced = {"common": 100 / (2 * 90), "rare": 100 / (2 * 10)}
    assert loss_weights(balanced, ("common", "rare"), "none", labels) is None
    full = loss_weights(balanced, ("common", "rare"), "balanced", labels)
    assert full[1] / full[0] == pytest.approx(9.0)
    root = loss_weights(balanced, ("common", "rare"), "sqrt", labels)
    assert root[1] / root[0] == pytest.approx(3.0)
    for weights in (full, root):
        assert np.mean([weights[label] for label in labels]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="unknown class weighting"):
        loss_weights(balanced, ("common", "rare"), "cubic", labels)


def test_one_hot() -> None:
    np.testing.assert_array_equal(one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_a_finished_or_foreign_checkpoint_starts_afresh(tmp_path) -> None:
    directory = tmp_path / "checkpoints"
    directory.mkdir()
    (directory / "epoch-2.keras").write_bytes(b"x")
    state = {
        "fingerprint": "abc",
        "complete": False,
        "checkpoint": "epoch-2.keras",
        "epochs_done": 2,
        "history": {"loss": [1.0, 0.9]},
        "seed_states": [],
        "callbacks": {},
    }
    (directory / "state.json").write_text(json.dumps(state))
    assert load_resume_state(directory, "abc")["epochs_done"] == 2
    assert load_resume_state(directory, "other") is None
    assert list(directory.iterdir()) == []  # cleared
    (directory / "state.json").write_text("{not json")
    assert load_resume_state(directory, "abc") is None


# A tiny training run, as a script so that the test can kill it like a user would.
TRAIN_SCRIPT = textwrap.dedent("""
    import sys, time
    from ferflow.runtime import start_backend
    start_backend()
    import keras, numpy as np
    from ferflow.pipeline.params import check, read_section
    from ferflow.training.recipe import build_training
    from ferflow.training.train import fit_resumable, training_callbacks

    class Pause(keras.callbacks.Callback):  # makes room for the kill between epochs
        def on_epoch_end(self, epoch, logs=None):
            time.sleep(float(sys.argv[2]))

    def run(checkpoints, pause):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, (40, 48, 48)).astype(np.uint8)
        y = np.arange(40) % 7
        recipe = {"arch": "seed_cnn_compact", "weights": "none", "epochs": 4, "batch_size": 16, "seed": 3,
                  "optimizer": "adamw", "learning_rate": 1e-3, "weight_decay": 1e-4, "schedule": "cosine",
                  "warmup_epochs": 1, "label_smoothing": 0.1, "crop_size": 44, "flip": True,
                  "random_erasing": 0.5, "noise_augment": 0.5, "mixup_alpha": 0.2, "geometric_augment": True}
        p = check("train", {**read_section("train", REPO_ROOT), **recipe})
        training = build_training(p, x, y, 7, {i: 1.0 + i / 10 for i in range(7)})
        model, batches = training.model, training.batches
        callbacks = training_callbacks("val_loss", 10, "cosine", 2, 0.5)
        model, history, first = fit_resumable(model, batches, x, y, 4, checkpoints, "fingerprint", "val_loss",
                                              callbacks, [Pause()] if pause else [])
        return model, history, first

    if __name__ == "__main__":
        run(sys.argv[1], True)
""").replace("REPO_ROOT", repr(str(REPO)))


def test_killed_training_resumes_from_the_last_epoch_with_identical_results(tmp_path) -> None:
    script = tmp_path / "tiny_train.py"
    script.write_text(TRAIN_SCRIPT)
    sys.path.insert(0, str(tmp_path))
    try:
        import tiny_train
    finally:
        sys.path.remove(str(tmp_path))
    checkpoints = tmp_path / "checkpoints"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    process = subprocess.Popen(
        [sys.executable, str(script), str(checkpoints), "5"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state_path = checkpoints / "state.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if state_path.exists() and json.loads(state_path.read_text()).get("epochs_done", 0) >= 1:
                break
            time.sleep(0.2)
        assert process.poll() is None, "the training run ended before it could be killed"
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    killed_state = json.loads(state_path.read_text())
    assert 1 <= killed_state["epochs_done"] < 4 and not killed_state["complete"]

    resumed_model, resumed_history, first = tiny_train.run(checkpoints, pause=False)
    assert first == killed_state["epochs_done"]
    assert json.loads(state_path.read_text())["complete"]

    fresh_model, fresh_history, fresh_first = tiny_train.run(tmp_path / "fresh", pause=False)
    assert fresh_first == 0
    assert resumed_history == fresh_history  # every epoch, the resumed ones included
    for a, b in zip(resumed_model.get_weights(), fresh_model.get_weights()):
        np.testing.assert_array_equal(a, b)


def tiny_fit(checkpoints: Path, epochs: int, learning_rate: float = 1e-3):
    """One tiny resumable training (40 random faces), as the train stage runs it."""
    from ferflow.pipeline.params import check, read_section
    from ferflow.training.recipe import build_training
    from ferflow.training.train import fit_resumable, training_callbacks

    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 48, 48)).astype(np.uint8)
    y = np.arange(40) % 7
    plain = {"random_erasing": 0.0, "noise_augment": 0.0, "mixup_alpha": 0.0, "geometric_augment": False}
    recipe = {"arch": "seed_cnn_compact", "weights": "none", "epochs": epochs, "batch_size": 16, "seed": 3}
    recipe |= {"optimizer": "sgd", "weight_decay": 0.0, "schedule": "plateau", "label_smoothing": 0.0, "crop_size": 44}
    p = check("train", {**read_section("train", REPO), **recipe, **plain})
    p = p.model_copy(update={"learning_rate": learning_rate})  # past the params' range, to make one diverge
    training = build_training(p, x, y, 7)
    return fit_resumable(
        training.model,
        training.batches,
        x,
        y,
        epochs,
        checkpoints,
        "fingerprint",
        "val_loss",
        training_callbacks("val_loss", 10, "cosine", 2, 0.5),
        restore_best=False,
    )


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncate", r"has [\d,]+ bytes, not the [\d,]+ recorded \(truncated\?\)"),
        ("garble", r"does not match its recorded checksum \(damaged\?\)"),
        ("epochs", r"state.json says 9 epochs are done, which is not 1..2"),
        ("types", r"state.json says '1' epochs are done"),
        ("history", r"state.json's history does not hold 1 epochs"),
    ],
)
def test_a_damaged_checkpoint_is_set_aside_in_one_line_and_training_starts_afresh(
    tmp_path, capsys, damage, message
) -> None:
    checkpoints = tmp_path / "checkpoints"
    tiny_fit(checkpoints, epochs=1)
    state_path = checkpoints / "state.json"
    state = json.loads(state_path.read_text())
    state["complete"] = False  # as if killed after its first epoch of three
    checkpoint = checkpoints / state["checkpoint"]
    if damage == "truncate":
        checkpoint.write_bytes(checkpoint.read_bytes()[:1000])
    elif damage == "garble":
        data = bytearray(checkpoint.read_bytes())
        data[len(data) // 2] ^= 0xFF
        checkpoint.write_bytes(bytes(data))
    elif damage == "epochs":
        state["epochs_done"] = 9
    elif damage == "types":
        state["epochs_done"] = "1"
    else:
        state["history"] = {"loss": []}
    state_path.write_text(json.dumps(state))
    capsys.readouterr()
    assert load_resume_state(checkpoints, "fingerprint", epochs=3) is None
    said = capsys.readouterr().out.strip()
    assert len(said.splitlines()) == 1 and said.startswith("checkpoint not resumed: ")
    assert re.search(message, said), said
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("checkpoints.bad-")]
    assert len(aside) == 1 and (aside[0] / "state.json").is_file()  # kept for inspection
    assert list(checkpoints.iterdir()) == []  # and training can start afresh


def test_a_checkpoint_that_does_not_load_starts_afresh_instead_of_failing_every_rerun(tmp_path, capsys) -> None:
    checkpoints = tmp_path / "checkpoints"
    tiny_fit(checkpoints, epochs=1)
    state = json.loads((checkpoints / "state.json").read_text())
    state.update(complete=False)
    for key in ("checkpoint_sha256", "checkpoint_bytes"):  # as a state written before checksums were kept
        state.pop(key)
    (checkpoints / "state.json").write_text(json.dumps(state))
    (checkpoints / state["checkpoint"]).write_bytes(b"PK\x03\x04 not really a zip")
    _, history, first = tiny_fit(checkpoints, epochs=2)
    assert first == 0 and len(history["loss"]) == 2
    assert "does not load" in capsys.readouterr().out


def test_a_diverging_training_fails_naming_the_learning_rate_and_keeps_no_nan_epoch(tmp_path) -> None:
    from ferflow.training.train import TrainingDiverged

    with pytest.raises(
        TrainingDiverged,
        match=r"the loss became (nan|inf) in epoch 1, batch \d+; lower "
        r"train.learning_rate",
    ):
        tiny_fit(tmp_path / "checkpoints", epochs=3, learning_rate=1e38)
    assert not (tmp_path / "checkpoints" / "state.json").exists()  # no checkpoint of a diverged epoch


def test_an_unwritable_checkpoint_folder_is_named(tmp_path) -> None:
    (tmp_path / "models").write_text("a file where the models folder should be")
    with pytest.raises(OSError, match=r"the checkpoint folder '.*models/checkpoints' cannot be written"):
        tiny_fit(tmp_path / "models" / "checkpoints", epochs=1)
