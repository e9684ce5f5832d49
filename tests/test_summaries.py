"""The report summaries, the headline metrics and the run summary printed after `dvc repro`."""

from __future__ import annotations

import json
import subprocess

import nbformat
import pytest

from ferflow.pipeline.headline import committed_headline, evaluation_headline, robustness_headline, summary_lines
from ferflow.pipeline.stage import summary_first
from ferflow.pipeline.summaries import evaluate_summary, preprocess_summary, robustness_summary, train_summary

EVALUATION = {
    "accuracy": 0.6612,
    "n_samples": 900,
    "macro": {"f1": 0.6234},
    "calibration": {"ece": 0.0412},
    "tta": {"mode": "tencrop", "accuracy": 0.6731},
    "per_class": {"happy": {"f1": 0.86}, "fear": {"f1": 0.41}, "sad": {"f1": 0.52}},
    "top_confusions": [{"true": "fear", "predicted": "sad", "share_of_true": 0.21, "faces": 30}],
}
ROBUSTNESS = {
    "clean_accuracy": 0.66,
    "mean_corruption_accuracy": 0.51,
    "per_corruption": {
        "jpeg": {"severity_1": 0.65, "severity_3": 0.60},
        "contrast": {"severity_1": 0.6, "severity_3": 0.22},
    },
    "per_class_sensitivity": {"happy": 0.1, "disgust": 0.3},
    "gaussian_noise": {"sigma_0.1": {"accuracy": 0.62, "drop": 0.04}},
}


def test_the_evaluate_summary_names_its_key_numbers_best_worst_and_top_confusion() -> None:
    text = evaluate_summary(EVALUATION)
    for fragment in (
        "900 test faces",
        "66.1%",
        "67.3% with tencrop",
        "0.623",
        "0.041",
        "happy best (F1 0.86)",
        "fear worst (F1 0.41)",
        "fear taken for sad (21.0% of the fear faces)",
    ):
        assert fragment in text, fragment


def test_the_robustness_summary_finds_the_hardest_corruption_and_the_noise_cost() -> None:
    text = robustness_summary(ROBUSTNESS)
    assert "hardest corruption is contrast (22.0% at its worst)" in text
    assert "σ 0.1 costs 4.0 points" in text and "disgust is the emotion that suffers most" in text
    without_noise = {key: value for key, value in ROBUSTNESS.items() if key != "gaussian_noise"}
    assert "σ" not in robustness_summary(without_noise)


def test_the_train_and_preprocess_summaries_read_what_their_stages_wrote() -> None:
    """The results files the last `dvc repro` wrote (in git), as the notebooks pass them."""
    from conftest import REPO

    from ferflow.io import read_json

    trained = read_json(REPO / "results" / "train.json")
    train = train_summary("vgg_quarter", trained, 95.0, 12)
    assert f"{trained['epochs_run']} epochs in 1.6 min, resumed after epoch 12" in train
    assert f"epoch {trained['kept_epoch']}" in train and f"{100 * trained['val_accuracy']:.1f}%" in train
    prepared = read_json(REPO / "results" / "preprocess.json")
    preprocess = preprocess_summary(prepared, {"happy": 0.5, "disgust": 9.2})
    kept, converted = prepared["removed"]["kept"], prepared["faces_converted"]
    assert f"{kept:,} unique faces kept of {converted:,}" in preprocess
    assert "disgust, gets a balanced class weight of 9.2" in preprocess


def test_headline_numbers_lead_with_test_accuracy_and_skip_noise_when_not_run() -> None:
    headline = evaluation_headline(EVALUATION, val_accuracy=0.64)
    assert list(headline) == ["acc_test", "acc_tta", "macro_f1", "ece", "acc_val"]
    assert headline["acc_tta"] == 0.6731 and headline["acc_val"] == 0.64
    assert robustness_headline(ROBUSTNESS) == {"acc_noise": 0.62, "acc_corruptions": 0.51}
    assert robustness_headline({"mean_corruption_accuracy": 0.5}) == {"acc_corruptions": 0.5}


def test_the_run_summary_shows_each_change_against_the_committed_value() -> None:
    lines = summary_lines({"acc_test": 0.51, "acc_val": 0.5}, {"acc_test": 0.4943, "acc_val": 0.5})
    assert len(lines) == 2
    assert lines[0].split()[:3] == ["test", "accuracy", "0.5100"] and lines[0].endswith("committed 0.4943 (+0.0157)")
    assert summary_lines({"acc_test": 0.51}, None)[0].strip().endswith("0.5100")


def test_committed_headline_reads_git_head_and_is_none_outside_git(tmp_path) -> None:
    assert committed_headline(tmp_path) is None
    (tmp_path / "metrics").mkdir()
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps({"acc_test": 0.42}))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "m"], cwd=tmp_path, check=True)
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps({"acc_test": 0.5}))
    assert committed_headline(tmp_path) == {"acc_test": 0.42}


@pytest.mark.parametrize("position", [1, 3])
def test_the_summary_cell_moves_under_the_title_and_the_notebook_itself_is_unchanged(position) -> None:
    cells = [
        nbformat.v4.new_markdown_cell("# Title"),
        nbformat.v4.new_code_cell("a = 1"),
        nbformat.v4.new_code_cell("b = 2"),
    ]
    cells.insert(position, nbformat.v4.new_code_cell("summary()", metadata={"tags": ["summary"]}))
    notebook = nbformat.v4.new_notebook(cells=cells)
    ordered = summary_first(notebook)
    assert [cell.source for cell in ordered.cells] == ["# Title", "summary()", "a = 1", "b = 2"]
    assert notebook.cells[position].source == "summary()"
