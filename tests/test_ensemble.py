"""`python -m ferflow.pipeline.ensemble`: one model file that averages its members, and the measured gain."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SAMPLE, save_member

from ferflow import CLASS_NAMES
from ferflow.pipeline.ensemble import EnsembleError, check_members, main


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("members")
    return [save_member(folder, "a", 1), save_member(folder, "b", 2)]


def test_the_ensemble_outputs_the_mean_of_its_members(members, faces, tmp_path) -> None:
    import keras

    out = tmp_path / "ensemble.keras"
    assert main(["build", "--out", str(out), *map(str, members)]) == 0
    loaded = [keras.saving.load_model(p, safe_mode=True, compile=False) for p in members]
    expected = np.mean([m.predict_on_batch(faces) for m in loaded], axis=0)
    single = loaded[0].predict_on_batch(faces)
    assert not np.allclose(expected, single, atol=1e-4)  # the members differ, so the mean is not either one
    from ferflow.faces.predict import load_classifier

    ensemble = load_classifier(out)  # what fer predict / fer serve do with --model
    np.testing.assert_allclose(ensemble.model.predict_on_batch(faces), expected, rtol=1e-5, atol=1e-6)
    assert ensemble.class_names == CLASS_NAMES and ensemble.crop_size == 44
    sidecar = json.loads(out.with_suffix(".json").read_text())
    assert sidecar["arch"] == "ensemble" and [m["file"] for m in sidecar["members"]] == ["a.keras", "b.keras"]
    assert sidecar["training_seconds"] == 23.0 and len(sidecar["model_sha256"]) == 64


def test_evaluate_scores_each_member_and_their_mean(members, tmp_path, capsys) -> None:
    import cv2

    from ferflow.data.processed import ProcessedData, save_processed
    from ferflow.evaluation.evaluate import predict_proba
    from ferflow.faces.predict import load_classifier

    files = sorted((SAMPLE / "test").glob("*/*.jpg"))[:21]
    x = np.stack([cv2.imread(str(f), cv2.IMREAD_GRAYSCALE) for f in files])
    y = np.array([CLASS_NAMES.index(f.parent.name) for f in files])
    empty = {"x": x[:0], "y": y[:0], "files": np.array([], dtype=str)}
    data = ProcessedData(
        x={"train": empty["x"], "val": x, "test": empty["x"]},
        y={"train": empty["y"], "val": y, "test": empty["y"]},
        files={"train": empty["files"], "val": np.array([f.name for f in files]), "test": empty["files"]},
        class_names=CLASS_NAMES,
    )
    dataset = tmp_path / "dataset.npz"
    save_processed(dataset, data)
    out = tmp_path / "gain.json"
    assert main(["evaluate", "--data", str(dataset), "--split", "val", "--out", str(out), *map(str, members)]) == 0
    results = json.loads(out.read_text())
    mean = np.mean([predict_proba(load_classifier(p).model, x) for p in members], axis=0)
    assert results["n_samples"] == 21 and len(results["members"]) == 2
    assert results["ensemble"]["accuracy"] == pytest.approx(float(np.mean(mean.argmax(axis=1) == y)))
    assert "mean of the models" in capsys.readouterr().out
    assert main(["evaluate", "--data", str(dataset), "--split", "test", *map(str, members)]) == 2
    assert "no faces in split 'test'" in capsys.readouterr().err


def test_members_must_agree_before_anything_is_written(members, tmp_path, capsys) -> None:
    other = save_member(tmp_path, "two_classes", 3, class_names=("happy", "sad"))
    out = tmp_path / "ensemble.keras"
    assert main(["build", "--out", str(out), str(members[0]), str(other)]) == 2
    assert "names the classes ['happy', 'sad']" in capsys.readouterr().err
    assert main(["build", "--out", str(out), str(members[0])]) == 2
    assert "at least two models" in capsys.readouterr().err
    assert main(["build", "--out", str(out), str(members[0]), str(tmp_path / "missing.keras")]) == 2
    assert "missing.keras' does not exist" in capsys.readouterr().err
    assert main(["build", "--out", str(tmp_path / "ensemble.h5"), *map(str, members)]) == 2
    assert "must end in .keras" in capsys.readouterr().err
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_check_members_names_the_disagreement() -> None:
    a, b = Path("a.keras"), Path("b.keras")
    with pytest.raises(EnsembleError, match="'b.keras' takes 40 px crops, but 'a.keras' takes 44 px"):
        check_members([a, b], [CLASS_NAMES, CLASS_NAMES], [44, 40])
    with pytest.raises(EnsembleError, match="given twice"):
        check_members([a, Path("a.keras")], [CLASS_NAMES, CLASS_NAMES], [44, 44])
    check_members([a, b], [CLASS_NAMES, CLASS_NAMES], [44, 44])  # agreeing members pass


def test_the_shipped_ensemble_card_lists_the_shipped_model_first_and_two_other_models(faces) -> None:
    """models/pretrained/fer2013_ensemble.json lists its .keras members beside it, each by checksum:
    member 0 is fer2013.keras, and the three are different models of the same classes and crop."""
    from ferflow.faces.predict import load_classifier
    from ferflow.io import sha256_file

    pretrained = REPO / "models" / "pretrained"
    card = json.loads((pretrained / "fer2013_ensemble.json").read_text())
    files = [member["file"] for member in card["members"]]
    assert files == ["fer2013.keras", "fer2013_member1.keras", "fer2013_member2.keras"]
    assert all(sha256_file(pretrained / m["file"]) == m["sha256"] for m in card["members"])
    members = [load_classifier(pretrained / name) for name in files]
    assert {(m.class_names, m.crop_size) for m in members} == {(tuple(card["class_names"]), 44)}
    outputs = [member.model.predict_on_batch(faces) for member in members]
    for i, j in ((0, 1), (0, 2), (1, 2)):  # three different models
        assert not np.allclose(outputs[i], outputs[j], atol=1e-3)


def test_records_name_no_folder_outside_the_working_folder(tmp_path, monkeypatch) -> None:
    from ferflow.pipeline.ensemble import recorded_path

    inside = tmp_path / "work" / "models" / "model.keras"
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    assert recorded_path(inside) == "models/model.keras"
    assert recorded_path(Path("models/model.keras")) == "models/model.keras"
    assert recorded_path(tmp_path / "elsewhere" / "dataset.npz") == "dataset.npz"


def test_measured_figures_go_into_the_card_by_code_not_by_hand(members, tmp_path, capsys) -> None:
    out = tmp_path / "ensemble.keras"
    assert main(["build", "--out", str(out), *map(str, members)]) == 0
    figures = {"accuracy": 0.61, "macro_f1": 0.55, "tencrop_accuracy": 0.63}
    (tmp_path / "val.json").write_text(json.dumps({"ensemble": figures, "n_samples": 2716}))
    (tmp_path / "test.json").write_text(json.dumps({"ensemble": figures, "n_samples": 3549}))
    noise = {"sigma_0.1": {"accuracy": 0.6, "drop": 0.01}}
    (tmp_path / "rob.json").write_text(json.dumps({"gaussian_noise": noise, "mean_corruption_accuracy": 0.5}))
    code = main(
        ["card", str(out), "--validation", str(tmp_path / "val.json"), "--test", str(tmp_path / "test.json")]
        + ["--robustness", str(tmp_path / "rob.json"), "--note", "CPU minutes as epochs x faces / faces/s"]
    )
    assert code == 0, capsys.readouterr().err
    card = json.loads(out.with_suffix(".json").read_text())
    assert (
        card["validation_metrics"]["tencrop_accuracy"] == 0.63 and "2,716 faces" in card["validation_metrics"]["split"]
    )
    assert card["test_metrics"]["gaussian_noise"] == noise and card["training_note"].startswith("CPU minutes")
    card["hand_note"] = "typed in by hand"
    out.with_suffix(".json").write_text(json.dumps(card))
    assert main(["card", str(out), "--note", "again"]) == 2
    assert "unknown field(s) ['hand_note']" in capsys.readouterr().err


def test_add_copies_a_trained_model_beside_the_card_as_its_next_member(members, faces, tmp_path, capsys) -> None:
    import shutil

    from ferflow.faces.predict import load_classifier
    from ferflow.io import sha256_file

    for member in members:  # a shipped ensemble: its members beside its card
        shutil.copy(member, tmp_path)
        shutil.copy(member.with_suffix(".json"), tmp_path)
    assert main(["build", "--out", str(tmp_path / "ensemble.keras"), *(str(tmp_path / m.name) for m in members)]) == 0
    card_path = tmp_path / "ensemble.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(json.dumps({**card, "test_metrics": {"accuracy": 0.5}}))
    run = save_member(tmp_path / "run", "model", 7)

    assert main(["add", str(run), "--card", str(card_path)]) == 0, capsys.readouterr().err
    added = tmp_path / "a_member2.keras"
    card = json.loads(card_path.read_text())
    assert [m["file"] for m in card["members"]] == ["a.keras", "b.keras", "a_member2.keras"]
    assert card["members"][2]["sha256"] == sha256_file(added) and "test_metrics" not in card
    assert card["training_seconds"] == 11.0 + 12.0 + 17.0
    own = json.loads(added.with_suffix(".json").read_text())
    assert own["run_model_sha256"] == sha256_file(run) and own["params"]["crop_size"] == 44
    np.testing.assert_allclose(
        load_classifier(added).model.predict_on_batch(faces),
        load_classifier(run).model.predict_on_batch(faces),
        atol=1e-6,
    )

    assert main(["add", str(run), "--card", str(card_path)]) == 2
    assert "already a member" in capsys.readouterr().err
    other = save_member(tmp_path / "run", "crop40", 8, crop_size=40)
    assert main(["add", str(other), "--card", str(card_path)]) == 2
    assert "takes 40 px crops" in capsys.readouterr().err
    assert main(["add", str(run), "--card", str(tmp_path / "a.json")]) == 2
    assert "lists no members" in capsys.readouterr().err
    assert len(json.loads(card_path.read_text())["members"]) == 3 and not (tmp_path / "a_member3.keras").exists()
