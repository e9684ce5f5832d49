"""`fer export` never deletes what it did not write, checks its target before any work, and
leaves no scratch behind (a killed export's scratch is removed by the next one)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from ferflow.apps.cli import EXIT_OK, EXIT_USAGE, main
from ferflow.model.export import ExportError, resolve_output


def export(model_path: Path, out: Path | str, fmt: str = "onnx") -> int:
    return main(["export", "--format", fmt, "--model", str(model_path), "--out", str(out)])


def tree(folder: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


def test_an_existing_folder_receives_the_export_and_keeps_everything_in_it(model_path, tmp_path) -> None:
    folder = tmp_path / "v"
    (folder / "sub").mkdir(parents=True)
    (folder / "notes.txt").write_text("x")
    before = tree(folder)
    assert export(model_path, folder) == EXIT_OK
    after = tree(folder)
    assert {name: after[name] for name in before} == before  # nothing of the user's touched
    assert set(after) - set(before) == {"fer.onnx", "fer.json"}  # the export and its sidecar, no scratch left
    # A folder holding a saved_model.pb and the user's own files is not a previous export either.
    (folder / "saved_model.pb").write_bytes(b"pb")
    assert export(model_path, folder, "saved_model") == EXIT_OK
    assert (folder / "notes.txt").read_text() == "x" and (folder / "saved_model.pb").read_bytes() == b"pb"
    assert (folder / "fer_saved_model" / "saved_model.pb").is_file() and (folder / "fer_saved_model.json").is_file()


def test_out_dot_writes_into_the_working_folder(model_path, tmp_path, monkeypatch) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    monkeypatch.chdir(tmp_path)
    assert export(model_path, ".") == EXIT_OK
    assert sorted(os.listdir(tmp_path)) == ["fer.json", "fer.onnx", "keep.txt"]
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_a_previous_export_is_replaced_and_a_saved_model_folder_too(model_path, tmp_path) -> None:
    target = tmp_path / "model.onnx"
    assert export(model_path, target) == EXIT_OK
    first = target.stat().st_ino
    assert export(model_path, target) == EXIT_OK
    assert target.stat().st_ino != first  # renamed into place, not written over
    saved = tmp_path / "sm"
    assert export(model_path, saved, "saved_model") == EXIT_OK
    assert (saved / "saved_model.pb").is_file()
    assert export(model_path, saved, "saved_model") == EXIT_OK  # a SavedModel folder is replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.onnx", "sm", "sm.json"]


def test_an_onnx_export_is_usable_by_fer_predict_as_it_is(model_path, tmp_path, capsys) -> None:
    from ferflow.faces.predict import load_classifier
    from ferflow.io import read_json, sha256_file
    from ferflow.model.sidecar import read_sidecar

    target = tmp_path / "mine.onnx"
    assert export(model_path, target) == EXIT_OK
    sidecar = read_json(tmp_path / "mine.json")
    assert sidecar["class_names"] == read_sidecar(model_path)["class_names"]
    assert sidecar["model_sha256"] == sha256_file(target)
    assert sidecar["exported_from"] == {"file": model_path.name, "sha256": sha256_file(model_path)}
    exported, original = load_classifier(target), load_classifier(model_path)
    assert (exported.runtime, original.runtime) == ("onnx", "keras")
    faces = np.random.default_rng(0).uniform(0, 255, (4, 48, 48, 1)).astype(np.float32)
    np.testing.assert_allclose(
        exported.model.predict_on_batch(faces), original.model.predict_on_batch(faces), atol=1e-4
    )


def test_a_json_at_the_sidecars_place_is_refused_before_the_model_loads(model_path, tmp_path, capsys) -> None:
    (tmp_path / "mine.json").write_text("{}")
    assert export(model_path, tmp_path / "mine.onnx") == EXIT_USAGE
    assert "'mine.json' exists and is not the sidecar of a previous export" in capsys.readouterr().err.replace(
        str(tmp_path) + "/", ""
    )
    assert (tmp_path / "mine.json").read_text() == "{}" and not (tmp_path / "mine.onnx").exists()


@pytest.mark.parametrize("kind", ["text file", "tflite name, other content", "file where a saved_model goes"])
def test_anything_else_at_the_target_is_refused_before_the_model_loads(kind, tmp_path, capsys) -> None:
    missing_model = tmp_path / "no_such.keras"  # the target is checked first, so this is never read
    if kind == "text file":
        target, fmt = tmp_path / "notes.onnx", "onnx"
        target.write_text("my notes")
    elif kind == "tflite name, other content":
        target, fmt = tmp_path / "model.tflite", "tflite"
        target.write_bytes(b"\x00" * 64)
    else:  # a SavedModel is a folder: a file at its place is not one
        target, fmt = tmp_path / "thesis.tex", "saved_model"
        target.write_text("years of work")
    before = tree(tmp_path)
    assert export(missing_model, target, fmt) == EXIT_USAGE
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "is not a previous" in message and str(target) in message
    assert tree(tmp_path) == before


@pytest.mark.parametrize("case", ["wrong suffix", "under a file", "read-only folder"])
def test_unusable_targets_are_one_line_before_any_work(case, tmp_path, capsys, monkeypatch) -> None:
    if case == "wrong suffix":
        out, expected = tmp_path / "model.txt", "ending in .onnx"
    elif case == "under a file":
        (tmp_path / "file").write_text("x")
        out, expected = tmp_path / "file" / "model.onnx", "is a file, not a folder"
    else:
        (tmp_path / "ro").mkdir(mode=0o555)
        # Tests run as root here, who may write anywhere: the permission check is what is tested.
        monkeypatch.setattr("ferflow.model.export.os.access", lambda path, mode: Path(path).name != "ro")
        out, expected = tmp_path / "ro" / "model.onnx", "is not writable"
    assert export(tmp_path / "no_such.keras", out) == EXIT_USAGE
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and expected in message


def test_a_killed_exports_scratch_is_removed_by_the_next_export(model_path, tmp_path) -> None:
    dead = 2**22 + 12345  # above pid_max's default: no such process
    stale = tmp_path / f".model.onnx.export-{dead}-abc123"
    (stale / "model.onnx").mkdir(parents=True)
    alive = tmp_path / f".model.onnx.export-{os.getpid()}-xyz789"  # a live process's: left alone
    alive.mkdir()
    assert export(model_path, tmp_path / "model.onnx") == EXIT_OK
    assert not stale.exists() and alive.exists()


def test_resolve_output_defaults_beside_the_model(tmp_path) -> None:
    model = tmp_path / "models" / "fer.keras"
    assert resolve_output(None, model, "tflite") == tmp_path / "models" / "exported" / "fer.tflite"
    assert resolve_output(None, model, "saved_model") == tmp_path / "models" / "exported" / "fer_saved_model"
    with pytest.raises(ExportError, match="unknown export format"):
        resolve_output(None, model, "pickle")
