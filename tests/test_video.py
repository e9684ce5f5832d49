"""Videos: faces followed through a clip (track, time), their emotion smoothed over seconds, the
timeline chart, the annotated video, and one line for each bad video while the run goes on.

The clip is made here (conftest.write_two_face_clip): 640x480, 10 s at 10 fps, two real faces
that move slowly and cross, one switching from angry to surprised at 5 s.
"""

from __future__ import annotations

import csv
import json
import struct
from pathlib import Path

import numpy as np
import pytest
from conftest import CLIP_SWITCH_S, clip_positions, write_two_face_clip

from ferflow import CLASS_NAMES
from ferflow.apps.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from ferflow.faces.records import FaceResult
from ferflow.faces.video import assign_tracks, smooth_tracks

cv2 = pytest.importorskip("cv2", reason="the [opencv] extra reads videos; requirements.txt installs it")


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory) -> dict:
    """`fer predict clip.mp4 --video-stride 1` with every output: the records, the annotated
    video and the timeline, run once for the module."""
    folder = tmp_path_factory.mktemp("clip")
    clip = write_two_face_clip(folder / "clip.mp4")
    out = folder / "out"
    out.mkdir()
    arguments = ["predict", str(clip), "--video-stride", "1", "--json", str(out / "faces.json")]
    code = main([*arguments, "--csv", str(out / "faces.csv"), "--annotate", str(out), "--timeline", str(out / "t.png")])
    return {"code": code, "clip": clip, "out": out, "faces": json.loads((out / "faces.json").read_text())["faces"]}


def by_track(faces: list[dict]) -> dict[int, list[dict]]:
    tracks: dict[int, list[dict]] = {}
    for face in faces:
        tracks.setdefault(face["track"], []).append(face)
    return tracks


def test_two_faces_give_two_tracks_each_over_90_percent_of_the_frames(clip_run) -> None:
    assert clip_run["code"] == EXIT_OK
    tracks = by_track(clip_run["faces"])
    assert len(tracks) == 2
    for faces in tracks.values():
        assert len({face["frame"] for face in faces}) >= 90


def test_track_ids_do_not_swap_when_the_faces_cross(clip_run) -> None:
    """Every face of a track is where one and the same person of the clip is, at its time."""
    for faces in by_track(clip_run["faces"]).values():
        owners = set()
        for face in faces:
            centre = np.array([face["x"] + face["width"] / 2, face["y"] + face["height"] / 2])
            corners = clip_positions(face["time"])
            distance = {name: np.linalg.norm(centre - (np.array(xy) + 60)) for name, xy in corners.items()}
            owners.add(min(distance, key=distance.get))
        assert len(owners) == 1, f"a track follows both faces: {owners}"
    first_frames = {name: faces[0]["frame"] for name, faces in by_track(clip_run["faces"]).items()}
    assert set(first_frames.values()) == {0}  # no track starts late: the crossing made none


def test_time_is_seconds_from_the_frame_rate(clip_run) -> None:
    for face in clip_run["faces"]:
        assert face["time"] == pytest.approx(face["frame"] / 10)


def majority(labels: list[str]) -> str:
    return max(set(labels), key=labels.count)


def test_the_smoothed_label_of_the_switching_face_follows_within_a_second(clip_run) -> None:
    switching = [
        faces
        for faces in by_track(clip_run["faces"]).values()
        if majority([f["emotion"] for f in faces[:40]]) != majority([f["emotion"] for f in faces[-40:]])
    ]
    assert len(switching) == 1
    faces = switching[0]
    before, after = majority([f["emotion"] for f in faces[:40]]), majority([f["emotion"] for f in faces[-40:]])
    assert all(f["emotion_smoothed"] == before for f in faces if f["time"] < CLIP_SWITCH_S)
    changed = min(f["time"] for f in faces if f["time"] >= CLIP_SWITCH_S and f["emotion_smoothed"] == after)
    assert changed - CLIP_SWITCH_S <= 1.0
    assert any(f["emotion_smoothed"] != f["emotion"] for f in faces)  # smoothed, not a copy of the raw label


def test_the_csv_has_time_track_and_both_labels(clip_run) -> None:
    with open(clip_run["out"] / "faces.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == len(clip_run["faces"])
    for column in ("time", "track", "emotion", "emotion_smoothed", *CLASS_NAMES):
        assert all(row[column] != "" for row in rows), column


def test_the_annotated_video_has_every_frame_at_the_clips_rate(clip_run) -> None:
    video = cv2.VideoCapture(str(clip_run["out"] / "clip.mp4"))
    frames = 0
    while video.read()[0]:
        frames += 1
    assert (frames, video.get(cv2.CAP_PROP_FPS)) == (100, 10)
    assert clip_run["clip"].stat().st_size > 0  # the input is untouched beside it


def test_at_stride_5_the_annotated_video_has_the_sampled_frames_at_a_fifth_of_the_rate(clip_run, tmp_path) -> None:
    assert main(["predict", str(clip_run["clip"]), "--video-stride", "5", "--annotate", str(tmp_path)]) == EXIT_OK
    video = cv2.VideoCapture(str(tmp_path / "clip.mp4"))
    assert (int(video.get(cv2.CAP_PROP_FRAME_COUNT)), video.get(cv2.CAP_PROP_FPS)) == (20, 2)


def test_the_timeline_has_a_row_per_track(clip_run) -> None:
    from PIL import Image

    chart = Image.open(clip_run["out"] / "t.png")
    assert chart.format == "PNG" and chart.size == (900, 40 + 2 * (150 + 40) + 36)
    colours = {colour for _, colour in chart.convert("RGB").getcolors(1 << 20)}
    assert (0xE3, 0x77, 0xC2) in colours  # surprise's line, in the reports' colour


def test_an_annotated_video_never_replaces_its_input(clip_run, capsys) -> None:
    folder = clip_run["clip"].parent
    before = clip_run["clip"].read_bytes()
    assert main(["predict", str(clip_run["clip"]), "--video-stride", "5", "--annotate", str(folder)]) == EXIT_USAGE
    assert "would replace the input" in capsys.readouterr().err
    assert clip_run["clip"].read_bytes() == before


def test_detecting_every_5_frames_keeps_both_tracks_with_a_fifth_of_the_searches(clip_run, monkeypatch) -> None:
    import ferflow.faces.predict as predict

    searches = []
    detect = predict.faces_in_copy
    monkeypatch.setattr(predict, "faces_in_copy", lambda *a, **k: searches.append(1) or detect(*a, **k))
    options = predict.PredictOptions(video_stride=1, detect_every=5)
    faces = predict.predict_paths([clip_run["clip"]], predict.load_classifier(), options).faces
    assert len(searches) == 20
    assert len(faces) == 200 and {face.track for face in faces} == {1, 2}


# ----------------------------------------------------------------------------- the parts alone


def face(frame: int, time: float, x: int, probabilities: dict[str, float] | None = None) -> FaceResult:
    probabilities = probabilities or dict.fromkeys(CLASS_NAMES, 1 / 7)
    return FaceResult(
        "v.mp4", frame, (x, 100, 60, 60), max(probabilities, key=probabilities.get), 1.0, probabilities, time
    )


def test_crossing_boxes_keep_their_tracks_from_their_velocity() -> None:
    """Two boxes moving towards each other at 40 px a frame overlap, then part: no swap."""
    rightwards = [face(i, i / 10, 20 + 40 * i) for i in range(12)]
    leftwards = [face(i, i / 10, 460 - 40 * i) for i in range(12)]
    assign_tracks(sorted(rightwards + leftwards, key=lambda f: f.frame))
    assert len({f.track for f in rightwards}) == 1 and len({f.track for f in leftwards}) == 1
    assert rightwards[0].track != leftwards[0].track


def test_a_face_gone_for_more_than_a_second_comes_back_as_a_new_track() -> None:
    faces = [face(0, 0.0, 100), face(1, 0.1, 102), face(20, 2.0, 104)]
    assign_tracks(faces)
    assert [f.track for f in faces] == [1, 1, 2]


def test_smoothing_is_in_seconds_not_frames() -> None:
    """The same switch at 10 and at 30 fps reaches the same smoothed value at the same time."""
    old, new = dict.fromkeys(CLASS_NAMES, 0.0), dict.fromkeys(CLASS_NAMES, 0.0)
    old["angry"], new["surprise"] = 1.0, 1.0
    values = {}
    for fps in (10, 30):
        faces = [face(i, i / fps, 100, old if i / fps < 1 else new) for i in range(2 * fps + 1)]
        for f in faces:
            f.track = 1
        smooth_tracks(faces, CLASS_NAMES, smoothing_s=0.5)
        values[fps] = next(f for f in faces if f.time == pytest.approx(1.5)).probabilities_smoothed["surprise"]
    # Within a frame's worth of each other and of 1 - e^-1 (one time constant after the switch);
    # a moving average in frames (0.2 a frame) would give 0.74 and 0.97.
    assert abs(values[10] - values[30]) < 0.05
    assert 1 - np.exp(-1.0) <= values[30] <= values[10] <= 1 - np.exp(-1.2) + 1e-9


def test_no_smoothing_copies_the_raw_label() -> None:
    faces = [face(i, i / 10, 100, {**dict.fromkeys(CLASS_NAMES, 0.0), CLASS_NAMES[i % 7]: 1.0}) for i in range(14)]
    for f in faces:
        f.track = 1
    smooth_tracks(faces, CLASS_NAMES, smoothing_s=0)
    assert [f.emotion_smoothed for f in faces] == [f.emotion for f in faces]


# ----------------------------------------------------------------------------- bad videos


def grey_avi(path: Path, frames: int = 5, fps: float = 10) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
    for _ in range(frames):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    return path


def zero_fps_mp4(path: Path) -> Path:
    """An MP4 whose video track's header (mdhd) gives a time scale of 0, so no frame rate: its
    version and flags, creation and modification times come first, 12 bytes."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for _ in range(5):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    data = bytearray(path.read_bytes())
    mdhd = data.index(b"mdhd") + 4
    data[mdhd + 12 : mdhd + 16] = struct.pack(">I", 0)
    path.write_bytes(bytes(data))
    return path


def test_each_bad_video_is_one_line_and_the_good_clip_goes_on(clip_run, tmp_path, capfd) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    zero_fps_mp4(bad / "zero_fps.mp4")
    clip_bytes = clip_run["clip"].read_bytes()
    (bad / "truncated.mp4").write_bytes(clip_bytes[: len(clip_bytes) // 2])
    (bad / "photo.mp4").write_bytes((clip_run["out"] / "t.png").read_bytes())
    (bad / "notes.mp4").write_text("not a video")
    grey_avi(bad / "no_face.avi")
    write_two_face_clip(bad / "good.avi", seconds=0.5)
    out = tmp_path / "faces.json"
    code = main(["predict", str(bad), "--video-stride", "1", "--json", str(out)])
    errors = capfd.readouterr().err.splitlines()
    expected = {
        "zero_fps.mp4": "no usable frame rate in its header",
        "truncated.mp4": "truncated",
        "photo.mp4": "is a PNG image, not a video",
        "notes.mp4": "cannot be opened as a video",
        "no_face.avi": "no face found in the 5 sampled frame(s)",
    }
    for name, words in expected.items():
        lines = [line for line in errors if f"{name}'" in line]
        assert len(lines) == 1 and words in lines[0], (name, lines)
    assert code == EXIT_PARTIAL
    faces = json.loads(out.read_text())["faces"]
    assert {Path(f["file"]).name for f in faces} == {"good.avi"} and len(faces) == 10


def test_a_frame_over_the_pixel_limit_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    import ferflow.faces.photo as photo

    clip = write_two_face_clip(tmp_path / "clip.avi", seconds=0.3)
    monkeypatch.setattr(photo, "MAX_IMAGE_PIXELS", 640 * 480 - 1)
    assert main(["predict", str(clip), "--video-stride", "1"]) == 3
    lines = [line for line in capsys.readouterr().err.splitlines() if str(clip) in line]
    assert len(lines) == 1 and "the limit is 307,199 pixels a frame" in lines[0]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--smooth", "-1"], "--smooth must be 0 to 60 seconds, got -1"),
        (["--smooth", "nan"], "--smooth must be 0 to 60 seconds"),
        (["--detect-every", "0"], "--detect-every must be 1 or more, got 0"),
        (["--timeline", "chart.html"], "--timeline: 'chart.html' must be a .png file"),
    ],
)
def test_bad_video_options_are_one_line(arguments, message, tmp_path, capsys) -> None:
    assert main(["predict", str(tmp_path), "--video-stride", "1", *arguments]) == EXIT_USAGE
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and message in errors[0], errors


# ----------------------------------------------------------------------------- fer serve


@pytest.fixture(scope="module")
def clip_client():
    from fastapi.testclient import TestClient

    from ferflow.apps.serve import create_app
    from ferflow.faces.predict import load_classifier

    app = create_app(load_classifier(), max_clip_seconds=12, max_clip_bytes=3_000_000)
    with TestClient(app, base_url="http://127.0.0.1:8000") as client:
        yield client


def upload_clip(client, name: str, data: bytes):
    return client.post("/predict/video", files={"file": (name, data, "video/mp4")})


def test_serve_follows_the_faces_of_a_clip(clip_client, clip_run) -> None:
    import base64

    answer = upload_clip(clip_client, "interview.mp4", clip_run["clip"].read_bytes())
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["clip"] == {"seconds": 10.0, "fps": 10.0, "stride": 2}
    assert [track["track"] for track in result["tracks"]] == [1, 2]
    assert {face["file"] for face in result["faces"]} == {"interview.mp4"}  # never the server's temporary name
    for track in result["tracks"]:
        assert sum(track["share"].values()) == pytest.approx(1.0)
    switching = [t for t in result["tracks"] if sorted(t["share"].values())[-2] > 0.3]
    assert len(switching) == 1  # about half angry, half surprised
    png = base64.b64decode(result["timeline"].removeprefix("data:image/png;base64,"))
    assert png.startswith(b"\x89PNG")


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("name", "make", "status", "words"),
    [
        (
            "long.avi",
            lambda folder: grey_avi(folder / "long.avi", frames=26, fps=2),
            413,
            "is 13.0 s long; the limit is 12 s",
        ),
        ("big.avi", lambda folder: written(folder / "big.avi", b"\0" * 3_000_001), 413, "limit of 3,000,000 bytes"),
        ("notes.mp4", lambda folder: written(folder / "n.mp4", b"text"), 400, "'notes.mp4'"),
        ("photo.jpg", lambda folder: written(folder / "p.jpg", b"\xff\xd8\xff"), 415, "not named as a video"),
        ("grey.avi", lambda folder: grey_avi(folder / "grey.avi"), 422, "no face found"),
    ],
)
def test_serve_refuses_a_bad_clip_saying_why(name, make, status, words, clip_client, tmp_path) -> None:
    answer = upload_clip(clip_client, name, make(tmp_path).read_bytes())
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"] and "ferflow-clip-" not in answer.json()["error"]


def test_a_clip_whose_header_hides_its_length_is_counted_up_to_the_limit(tmp_path) -> None:
    """With no frame count in the header, the frames are counted, and no further than the limit."""
    from ferflow.apps.serve import clip_seconds

    class NoFrameCount:
        def __init__(self, path: str) -> None:
            self.capture = cv2.VideoCapture(path)

        def get(self, prop: int) -> float:
            return 0.0 if prop == cv2.CAP_PROP_FRAME_COUNT else self.capture.get(prop)

        def __getattr__(self, name: str):
            return getattr(self.capture, name)

    class HeaderWithoutCount:
        CAP_PROP_FRAME_COUNT = cv2.CAP_PROP_FRAME_COUNT
        VideoCapture = NoFrameCount

    clip = grey_avi(tmp_path / "long.avi", frames=60, fps=2)  # 30 s
    assert clip_seconds(cv2, clip, 2.0, 12) == 30.0  # from the header
    assert clip_seconds(HeaderWithoutCount, clip, 2.0, 12) == 12.5  # counted, to one frame past 12 s
