"""What `fer predict` writes, and where it refuses to: no input, device, link or other run's file is
ever overwritten, outputs are checked before any work, and an interrupted run keeps its results."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE
from PIL import Image as PILImage

from ferflow.apps.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from ferflow.io import OutputError, exclusive_output, file_target, folder_target, write_output

FACES = sorted((SAMPLE / "test" / "happy").glob("*.jpg"))[:3]


@pytest.fixture
def crops(tmp_path) -> Path:
    """A folder of three real FER-2013 faces (classified whole with --no-detect)."""
    folder = tmp_path / "crops"
    folder.mkdir()
    for index, face in enumerate(FACES):
        shutil.copy(face, folder / f"face{index}.jpg")
    return folder


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def predict(*args: str) -> int:
    return main(["predict", *args, "--no-detect"])


# ----------------------------------------------------------------------------- nothing overwritten


def test_annotating_into_the_input_folder_is_refused_and_the_photos_stay(crops, capsys) -> None:
    before = snapshot(crops)
    assert predict(str(crops), "--annotate", str(crops)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.strip() == f"error: --annotate: '{crops}' is an input folder; its photos would be overwritten; " + (
        "choose another folder"
    )
    assert snapshot(crops) == before


def test_an_output_named_like_an_input_is_refused_before_any_work(crops, capsys) -> None:
    photo = crops / "face0.jpg"
    before = photo.read_bytes()
    for flag in ("--csv", "--json"):
        assert predict(str(photo), flag, str(photo)) == EXIT_USAGE
        assert f"error: {flag}: '{photo}' is one of the inputs and would be overwritten" in capsys.readouterr().err
    assert photo.read_bytes() == before
    # an input reached through a link is the same file
    link = crops.parent / "link.csv"
    link.symlink_to(photo)
    assert predict(str(crops), "--csv", str(link)) == EXIT_USAGE
    assert photo.read_bytes() == before


def test_an_output_through_a_symlink_is_written_to_the_links_target(crops, tmp_path) -> None:
    real = tmp_path / "results" / "faces.json"
    real.parent.mkdir()
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    assert predict(str(crops), "--json", str(link)) == EXIT_OK
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert len(json.loads(real.read_text())["faces"]) == 3


@pytest.mark.parametrize("device", ["/dev/null", "/dev/full"])
def test_a_device_is_refused_and_stays_a_device(crops, device, capsys) -> None:
    assert predict(str(crops), "--json", device) == EXIT_USAGE
    assert f"'{device}' is a device, not a file; give '-' to write to standard output" in capsys.readouterr().err
    assert Path(device).is_char_device()


def test_a_fifo_is_refused_as_an_output(crops, tmp_path, capsys) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert predict(str(crops), "--csv", str(fifo)) == EXIT_USAGE
    assert "is a FIFO, not a file" in capsys.readouterr().err


def test_dash_writes_the_records_to_standard_output_without_the_table(crops, capsys) -> None:
    assert predict(str(crops), "--json", "-") == EXIT_OK
    out = capsys.readouterr().out
    assert len(json.loads(out)["faces"]) == 3  # the whole of stdout is the JSON document
    assert predict(str(crops), "--json", "-", "--csv", "-") == EXIT_USAGE
    assert "cannot both go to standard output" in capsys.readouterr().err


def test_a_full_standard_output_is_an_error_not_a_success(crops) -> None:
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "ferflow.apps.cli", "predict", str(crops), "--no-detect", "--json", "-"],
            stdout=full,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    assert done.returncode == EXIT_USAGE
    assert "error: standard output could not be written: No space left on device" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_writable_file_in_a_folder_that_is_not_is_refused_before_any_work(crops, tmp_path, monkeypatch) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "faces.json").write_text("{}")
    real_access = os.access
    # root may write anywhere: the folder is made unwritable for this process by the check's own eyes
    monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != folder and real_access(p, mode))
    with pytest.raises(OutputError, match=f"the folder '{folder}' is not writable"):
        file_target(folder / "faces.json")


def test_the_same_file_for_json_and_csv_is_refused(crops, tmp_path, capsys) -> None:
    out = tmp_path / "both"
    assert predict(str(crops), "--json", str(out), "--csv", str(out)) == EXIT_USAGE
    assert "name the same file" in capsys.readouterr().err and not out.exists()


def test_a_second_run_writing_the_same_file_is_refused(crops, tmp_path, capsys) -> None:
    out = tmp_path / "faces.json"
    with exclusive_output(out, str(out)):  # the first run, still going
        assert predict(str(crops), "--json", str(out)) == EXIT_USAGE
        assert f"'{out}' is being written by another run (process {os.getpid()})" in capsys.readouterr().err
    assert not out.exists()
    assert predict(str(crops), "--json", str(out)) == EXIT_OK  # free again once the first run ended
    assert not (tmp_path / ".faces.json.lock").exists()


def test_a_write_that_fails_is_one_line_and_keeps_the_earlier_file(tmp_path, monkeypatch) -> None:
    out = tmp_path / "faces.json"
    out.write_text("earlier results")

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", disk_full)
    with pytest.raises(OutputError, match=f"'{out}' could not be written: No space left on device"):
        write_output(out, "new results", out)
    monkeypatch.undo()
    assert out.read_text() == "earlier results" and [p.name for p in tmp_path.iterdir()] == ["faces.json"]


def test_folder_target_refuses_a_file_and_accepts_a_new_folder(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="exists and is not a folder"):
        folder_target(tmp_path / "file")
    assert folder_target(tmp_path / "new" / "deeper") == (tmp_path / "new" / "deeper").resolve()


# ----------------------------------------------------------------------------- names and cells


def test_names_that_are_not_utf8_are_kept_in_csv_json_and_the_table(crops, tmp_path, capsys) -> None:
    odd = os.fsdecode(b"caf\xe9.jpg")  # Latin-1 bytes, read by Python with a surrogate escape
    shutil.copy(FACES[0], crops / odd)
    out_csv, out_json = tmp_path / "faces.csv", tmp_path / "faces.json"
    assert predict(str(crops / odd), "--csv", str(out_csv), "--json", str(out_json)) == EXIT_OK
    assert b"caf\xe9.jpg" in out_csv.read_bytes()
    assert json.loads(out_json.read_text())["faces"][0]["file"] == str(crops / odd)
    assert "caf\\xe9.jpg" in capsys.readouterr().out


def test_csv_cells_that_would_run_as_formulas_are_quoted(crops, tmp_path, monkeypatch) -> None:
    shutil.copy(FACES[0], crops / "=HYPERLINK(1).jpg")
    shutil.copy(FACES[1], crops / "@SUM(1).jpg")
    out = tmp_path / "faces.csv"
    monkeypatch.chdir(crops)  # relative names: the file column starts with the name itself
    assert predict("=HYPERLINK(1).jpg", "@SUM(1).jpg", "--csv", str(out)) == EXIT_OK
    files = [row["file"] for row in csv.DictReader(out.open())]
    assert files == ["'=HYPERLINK(1).jpg", "'@SUM(1).jpg"]


# ----------------------------------------------------------------------------- annotated copies


def test_photos_with_one_stem_keep_both_annotated_copies(crops, tmp_path) -> None:
    PILImage.open(FACES[1]).save(crops / "face0.png")  # face0.jpg and face0.png
    annotated = tmp_path / "annotated"
    assert predict(str(crops), "--annotate", str(annotated)) == EXIT_OK
    assert sorted(p.name for p in annotated.iterdir()) == ["face0.jpg", "face0.png", "face1.jpg", "face2.jpg"]


def test_an_annotated_copy_is_never_written_onto_a_fifo_or_through_to_an_input(crops, tmp_path, capsys) -> None:
    annotated = tmp_path / "annotated"
    annotated.mkdir()
    os.mkfifo(annotated / "face0.jpg")  # a writer that opened it would block forever
    (annotated / "face1.jpg").symlink_to(crops / "face2.jpg")  # a link back to an input
    before = snapshot(crops)
    assert predict(str(crops), "--annotate", str(annotated)) == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert "annotated copy of" in err and "is a FIFO, not a file" in err
    assert "is one of the inputs and would be overwritten" in err
    assert snapshot(crops) == before and (annotated / "face2.jpg").is_file()


def test_annotated_copies_inside_the_input_folder_are_not_read_again(crops, tmp_path) -> None:
    annotated = crops / "annotated"
    out = tmp_path / "faces.json"
    for _ in range(2):
        assert predict(str(crops), "--annotate", str(annotated), "--json", str(out)) == EXIT_OK
        assert len(json.loads(out.read_text())["faces"]) == 3
    assert len(list(annotated.iterdir())) == 3


def test_annotating_keeps_few_photos_in_memory(crops, tmp_path, monkeypatch) -> None:
    """Photos kept for annotation are bounded by bytes: a large photo is classified at once."""
    import ferflow.faces.predict as predict_module

    calls = []
    real = predict_module.classify_faces
    monkeypatch.setattr(predict_module, "classify_faces", lambda *a, **k: calls.append(1) or real(*a, **k))
    monkeypatch.setattr(predict_module, "PENDING_PHOTO_BYTES", 48 * 48 * 3)  # one face crop's RGB pixels
    assert predict(str(crops), "--annotate", str(tmp_path / "annotated")) == EXIT_OK
    assert len(calls) == 3
    calls.clear()
    assert predict(str(crops)) == EXIT_OK  # without annotation only the crops are kept: one call
    assert len(calls) == 1


# ----------------------------------------------------------------------------- inputs


def test_fifos_sockets_and_dangling_links_are_reported_not_skipped(crops, tmp_path, capsys) -> None:
    import socket

    os.mkfifo(crops / "pipe.jpg")
    (crops / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(crops / "socket.png"))
    try:
        assert predict(str(crops), str(crops / "pipe.jpg")) == EXIT_PARTIAL
    finally:
        server.close()
    err = capsys.readouterr().err
    assert err.count(f"'{crops / 'pipe.jpg'}' is not a regular file") == 2  # in the folder, and given directly
    assert f"'{crops / 'socket.png'}' is not a regular file" in err
    assert f"'{crops / 'gone.jpg'}' is a link to '{tmp_path / 'nowhere.jpg'}', which does not exist" in err


def test_a_large_file_that_is_no_image_is_refused_from_its_header(tmp_path, monkeypatch, capsys) -> None:
    fake = tmp_path / "huge.jpg"
    with fake.open("wb") as handle:
        handle.write(b"not an image at all")
        handle.truncate(3 * 2**30)  # 3 GB, sparse: nothing is written to disk

    def read_whole(self):
        raise AssertionError(f"{self} was read whole")

    monkeypatch.setattr(Path, "read_bytes", read_whole)
    assert predict(str(fake)) == 3
    assert f"unreadable: '{fake}' is not a readable image" in capsys.readouterr().err


def test_ctrl_c_writes_the_faces_found_so_far_and_one_line(crops, tmp_path, monkeypatch, capsys) -> None:
    import ferflow.faces.predict as predict_module

    real = predict_module.read_images

    def interrupted_at_the_third(path, stride):
        if path.name == "face2.jpg":
            raise KeyboardInterrupt
        return real(path, stride)

    monkeypatch.setattr(predict_module, "read_images", interrupted_at_the_third)
    out = tmp_path / "faces.json"
    assert predict(str(crops), "--json", str(out)) == EXIT_INTERRUPTED
    err = capsys.readouterr().err
    assert "interrupted after 3 file(s): the faces found so far are written" in err and "Traceback" not in err
    assert [Path(f["file"]).name for f in json.loads(out.read_text())["faces"]] == ["face0.jpg", "face1.jpg"]


# ----------------------------------------------------------------------------- videos


def write_video(path: Path, frames: int = 20, size: tuple[int, int] = (64, 48)) -> Path:
    import cv2

    fourcc = "MJPG" if path.suffix == ".avi" else "mp4v"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    face = np.asarray(PILImage.open(FACES[0]).convert("RGB").resize((size[1], size[1])))
    for index in range(frames):
        frame = np.full((size[1], size[0], 3), index * 5, np.uint8)
        frame[:, : size[1]] = face
        writer.write(frame)
    writer.release()
    return path


def test_a_truncated_video_reports_its_short_read(tmp_path, capsys) -> None:
    clip = write_video(tmp_path / "clip.avi")
    data = clip.read_bytes()
    clip.write_bytes(data[: int(len(data) * 0.7)])
    assert predict(str(clip), "--video-stride", "1") == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert f"'{clip}' ended after" in err and "of the 20 frames its header promises" in err


def test_a_broken_mp4_is_one_line_and_ffmpeg_stays_quiet(tmp_path, capfd) -> None:
    clip = write_video(tmp_path / "clip.mp4")
    clip.write_bytes(clip.read_bytes()[:800])  # no 'moov' atom left
    assert predict(str(clip), "--video-stride", "1") == 3
    err = capfd.readouterr().err
    assert f"unreadable: '{clip}' cannot be opened as a video" in err
    assert "moov atom" not in err


def test_video_frames_over_the_pixel_limit_are_refused_before_they_are_read(tmp_path, monkeypatch, capsys) -> None:
    import ferflow.faces.photo as photo

    clip = write_video(tmp_path / "clip.avi")
    monkeypatch.setattr(photo, "MAX_IMAGE_PIXELS", 64 * 48 - 1)
    assert predict(str(clip), "--video-stride", "1") == 3
    assert f"'{clip}' has frames of 64x48 pixels; the limit is 3,071 pixels a frame" in capsys.readouterr().err


# ----------------------------------------------------------------------------- sidecars


@pytest.mark.parametrize("crop", [100, -5, "abc", 44.5, True])
def test_a_sidecar_with_an_unusable_crop_is_refused_in_one_line(crop, tmp_path, capsys) -> None:
    from ferflow.faces.predict import DEFAULT_MODEL

    model = tmp_path / "m.onnx"
    shutil.copy(DEFAULT_MODEL, model)
    sidecar = json.loads(DEFAULT_MODEL.with_suffix(".json").read_text())
    sidecar["params"]["crop_size"] = crop
    model.with_suffix(".json").write_text(json.dumps(sidecar))
    assert predict(str(FACES[0]), "--model", str(model), "--tta") == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: '{model.with_suffix('.json')}': params.crop_size must be 0 (whole faces) or")
    assert repr(crop) in err and len(err.splitlines()) == 1


def test_a_model_swapped_under_its_sidecar_is_refused(tmp_path, capsys) -> None:
    from ferflow.faces.predict import DEFAULT_MODEL
    from ferflow.model.onnx_runtime import ASSETS

    model = tmp_path / "fer2013.onnx"
    shutil.copy(ASSETS / "fer2013_member1.onnx", model)  # another model's file...
    shutil.copy(DEFAULT_MODEL.with_suffix(".json"), model.with_suffix(".json"))  # ...under this one's card
    assert predict(str(FACES[0]), "--model", str(model)) == EXIT_USAGE
    assert "is not the model that 'fer2013.json' describes" in capsys.readouterr().err


def test_an_onnx_model_without_a_card_is_told_where_the_sidecar_comes_from(tmp_path, capsys) -> None:
    import onnx

    from ferflow.faces.predict import DEFAULT_MODEL

    bare = onnx.load(str(DEFAULT_MODEL))
    del bare.metadata_props[:]  # an ONNX file from elsewhere: no card inside, none beside it
    model = tmp_path / "m.onnx"
    onnx.save(bare, str(model))
    assert predict(str(FACES[0]), "--model", str(model)) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"'{tmp_path / 'm.json'}' is missing" in err and "next to 'm.onnx'" in err and ".keras file" not in err
