"""Training helpers: checkpoint choice, DVCLive logging on any backend."""

from __future__ import annotations

import numpy as np
from dvclive import Live

from fer.models import build_model
from fer.runtime import seed_everything
from fer.train import LiveLogger, best_epoch, compile_model, fit, standard_callbacks


def test_best_epoch_follows_the_monitor_direction() -> None:
    history = {"val_accuracy": [0.2, 0.5, 0.4], "val_loss": [1.0, 0.9, 0.7]}
    assert best_epoch(history, "val_accuracy") == 1
    assert best_epoch(history, "val_loss") == 2


def test_fit_logs_curves_for_dvc_plots_and_keeps_the_best_checkpoint(tmp_path, rng) -> None:
    x = rng.integers(0, 256, size=(14, 48, 48, 1)).astype("float32")
    y = np.arange(14) % 7
    seed_everything(0)  # with deterministic ops, TensorFlow refuses unseeded random ops
    model = build_model("seed_cnn", 7)
    compile_model(model, 1e-3)
    checkpoint = tmp_path / "best.weights.h5"
    with Live(str(tmp_path / "live"), dvcyaml=False, save_dvc_exp=False, report=None) as live:
        callbacks = standard_callbacks(checkpoint, "val_accuracy", 5, 2, 0.5)
        history = fit(model, x, y, x, y, epochs=2, batch_size=7, class_weight=None,
                      callbacks=callbacks + [LiveLogger(live)])
    assert checkpoint.exists()
    for split in ("train", "val"):
        for metric in ("loss", "accuracy"):
            rows = (tmp_path / "live" / "plots" / "metrics" / split / f"{metric}.tsv").read_text().splitlines()
            assert rows[0] == f"step\t{metric}"
            logged = [float(r.split("\t")[1]) for r in rows[1:]]
            key = metric if split == "train" else f"val_{metric}"
            np.testing.assert_allclose(logged, history.history[key], rtol=1e-6)
