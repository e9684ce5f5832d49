"""`python -m ferflow.pipeline.ship`: the shipped model's sidecar joins the run's model, data and test results."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from conftest import REPO

from ferflow.pipeline.ship import main


def fake_run(root: Path) -> None:
    (root / "models").mkdir(parents=True)
    (root / "results").mkdir()
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    from ferflow.io import save_model
    from ferflow.model.registry import build_model
    from ferflow.training.recipe import compile_model

    model = build_model("seed_cnn_compact", 2)
    compile_model(model, 1e-3)
    model.optimizer.build(model.trainable_variables)  # optimizer state, as after training
    save_model(model, root / "models/model.keras")
    (root / "models/model.json").write_text(
        json.dumps(
            {
                "class_names": ["happy", "sad"],
                "input": {"shape": [48, 48, 1]},
                "params": {"arch": "vgg"},
                "data": {"dataset_sha256": "abc", "split_sizes": {"train": 10, "val": 2, "test": 3}},
                "training_seconds": 12.5,
            }
        )
    )
    (root / "results/preprocess.json").write_text(json.dumps({"unique_faces": 15}))
    (root / "results/evaluate.json").write_text(
        json.dumps(
            {
                "accuracy": 0.7,
                "n_samples": 3,
                "macro": {"f1": 0.6},
                "per_class": {"happy": {"f1": 0.8}, "sad": {"f1": 0.4}},
                "tta": {"mode": "tencrop", "accuracy": 0.72},
                "calibration": {"ece": 0.05},
            }
        )
    )
    (root / "results/robustness.json").write_text(
        json.dumps({"gaussian_noise": {"sigma_0.1": {"accuracy": 0.66, "drop": 0.04}}, "mean_corruption_accuracy": 0.6})
    )


def test_ship_copies_the_model_and_merges_the_sidecar(tmp_path) -> None:
    run = tmp_path / "run"
    fake_run(run)
    target = tmp_path / "pretrained" / "fer2013.keras"
    assert main([str(run), "--source-name", "fer2013 (Kaggle folders)", "--target", str(target)]) == 0
    run_model = run / "models/model.keras"
    assert target.stat().st_size < 0.6 * run_model.stat().st_size  # no optimizer state
    import keras
    import numpy as np

    x = np.random.default_rng(0).integers(0, 256, size=(2, 48, 48, 1)).astype("float32")
    np.testing.assert_allclose(
        keras.saving.load_model(target, safe_mode=True).predict(x, verbose=0),
        keras.saving.load_model(run_model, safe_mode=True).predict(x, verbose=0),
        rtol=1e-6,
    )
    sidecar = json.loads(target.with_suffix(".json").read_text())
    assert sidecar["class_names"] == ["happy", "sad"] and sidecar["training_seconds"] == 12.5
    assert sidecar["data"]["source"] == "fer2013 (Kaggle folders)"
    assert sidecar["data"]["split_sizes"]["test"] == 3 and sidecar["data"]["preprocess"] == {"unique_faces": 15}
    assert sidecar["test_metrics"]["accuracy"] == 0.7 and sidecar["test_metrics"]["tta"]["accuracy"] == 0.72
    assert sidecar["test_metrics"]["gaussian_noise"]["sigma_0.1"]["drop"] == 0.04
    assert sidecar["test_metrics"]["per_class_f1"] == {"happy": 0.8, "sad": 0.4}
    assert len(sidecar["model_sha256"]) == 64 and sidecar["model_sha256"] != sidecar["run_model_sha256"]
