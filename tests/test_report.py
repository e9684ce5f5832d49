"""The report index page: links, metrics, embedded figures, params, versions."""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path

import yaml
from conftest import REPO

from ferflow.pipeline.report import STAGE_REPORTS, build_index

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)


def fake_run(root: Path) -> None:
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    (root / "results").mkdir()
    (root / "plots").mkdir()
    (root / "models").mkdir()
    (root / "results/evaluate.json").write_text(
        json.dumps({"accuracy": 0.6123, "n_samples": 50, "macro": {"f1": 0.5}, "weighted": {"f1": 0.55}})
    )
    (root / "results/train.json").write_text(
        json.dumps({"val_accuracy": 0.5877, "epochs_run": 4, "kept_epoch": 3, "train_accuracy": 0.7, "val_loss": 1.1})
    )
    (root / "results/robustness.json").write_text(
        json.dumps({"gaussian_noise": {"sigma_0.1": {"accuracy": 0.5, "drop": 0.1123}}})
    )
    (root / "results/latency.json").write_text(json.dumps({"single_ms_p50": 3.21}))
    (root / "models/model.json").write_text(json.dumps({"environment": {"keras_backend": "jax"}}))
    for name in ("training_curves", "confusion_matrix_normalised", "per_class_f1", "reliability", "robustness_heatmap"):
        (root / f"plots/{name}.png").write_bytes(PNG)
    (root / "dvc.lock").write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "train": {
                        "cmd": "x",
                        "deps": [{"path": "data/processed/dataset.npz", "md5": "abc123"}],
                        "outs": [{"path": "models/model.keras", "md5": "def456"}],
                    }
                },
            }
        )
    )


def test_index_links_every_stage_and_shows_metrics_figures_params_versions(tmp_path) -> None:
    fake_run(tmp_path)
    page = build_index(tmp_path)
    for file in STAGE_REPORTS.values():
        assert f'href="{file}"' in page
    assert "61.23%" in page and "3.21 ms" in page and "σ=0.1" in page
    assert "58.77%" in page and "4 (3)" in page  # the train stage's own keys, not "n/a"
    assert len(re.findall(r'<img src="data:image/png;base64,', page)) == 5
    assert "train.learning_rate" in page
    assert "abc123" in page and "def456" in page
    assert "not a git checkout" in page
    assert "keras_backend" in page and "jax" in page


def test_missing_figures_and_metrics_do_not_break_the_page(tmp_path) -> None:
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    page = build_index(tmp_path)
    assert "<img" not in page
    assert "n/a" in page


def test_index_opens_with_what_the_run_found_against_the_commit_and_marks_changed_params(tmp_path) -> None:
    import subprocess

    fake_run(tmp_path)
    (tmp_path / "params").mkdir()
    shutil.copytree(REPO / "params" / "presets", tmp_path / "params" / "presets")
    (tmp_path / "metrics").mkdir()
    committed = {"acc_test": 0.60, "acc_tta": 0.61, "macro_f1": 0.50, "ece": 0.05, "acc_val": 0.58}
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps(committed))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=tmp_path, check=True)
    page = build_index(tmp_path)
    assert "It gives the committed run's figures." in page  # nothing moved yet
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps({**committed, "acc_test": 0.6123}))
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    default_rate = params["train"]["learning_rate"]
    params["train"]["learning_rate"] = 0.123
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    page = build_index(tmp_path)
    lead = re.search(r"<p class='lead'>(.*?)</p>", page, re.S).group(1)
    assert "scored 61.23% on 50 test faces" in lead and "test accuracy +1.2 points" in lead
    assert "1 value(s) differ from the shipped defaults" in page
    row = re.search(r'<tr class="changed">(.*?)</tr>', page).group(1)
    assert row == f"<td>train.learning_rate</td><td>0.123</td><td>{default_rate}</td>"
