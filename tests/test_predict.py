"""`fer predict` and `fer export` on real faces: detection, outputs, every error case, parity."""

from __future__ import annotations

import csv
import json
import os
import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import PLACED, two_face_canvas
from skimage import data as skimage_data

from ferflow import CLASS_NAMES
from ferflow.apps.cli import EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from ferflow.faces.detectors import detect_faces
from ferflow.faces.mtcnn import Mtcnn, MtcnnDetector, MtcnnTensorFlow
from ferflow.faces.photo import Image, crop_face, decode_image, face_frame
from ferflow.faces.predict import (
    ModelFileError,
    PredictOptions,
    face_detector,
    load_classifier,
    locate_faces,
    predict_paths,
)

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample" / "test"


def iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    h = max(0, min(ay + ah, by + bh) - max(ay, by))
    return w * h / (aw * ah + bw * bh - w * h)


@pytest.fixture(scope="module")
def classifier(model_path):
    return load_classifier(model_path)


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder with the astronaut portrait, a canvas with two sample faces, and a nested copy."""
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    cv2.imwrite(str(folder / "astronaut.png"), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(folder / "nested" / "two_faces.jpg"), two_face_canvas())
    return folder


def test_detector_finds_both_placed_faces_where_they_are() -> None:
    boxes = detect_faces(two_face_canvas(), face_detector())
    assert len(boxes) == 2
    for x, y, size in PLACED.values():
        assert max(iou(box, (x, y, size, size)) for box in boxes) > 0.5


def test_astronaut_portrait_gives_one_face_with_a_distribution(photos, classifier) -> None:
    result = predict_paths([photos / "astronaut.png"], classifier)
    assert result.problems == [] and len(result.faces) == 1
    face = result.faces[0]
    x, y, w, h = face.box
    assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 200  # her face, upper middle of the 512x512 photo
    assert list(face.probabilities) == list(CLASS_NAMES)
    assert sum(face.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert face.emotion == max(face.probabilities, key=face.probabilities.get)


def test_crop_is_grey_48x48_at_the_border() -> None:
    grey = np.zeros((100, 120), dtype=np.uint8)
    assert crop_face(grey, (90, 70, 40, 40), margin=0.2).shape == (48, 48)


def test_frame_grows_the_short_side_to_a_square_then_adds_the_margin() -> None:
    assert face_frame((10, 20, 30, 40), margin=0.0, square=False) == (10, 20, 30, 40)
    assert face_frame((10, 20, 30, 40), margin=0.0, square=True) == (5, 20, 40, 40)
    assert face_frame((10, 20, 30, 40), margin=0.25, square=True) == (-5, 10, 60, 60)


def test_frame_past_the_border_repeats_the_edge_instead_of_stretching_the_face() -> None:
    # Each pixel holds twice its column: the crop's columns show which image columns they came from.
    grey = np.tile((2 * np.arange(120)).astype(np.uint8), (100, 1))
    crop = crop_face(grey, (80, 20, 40, 40), margin=0.25)  # frame x 70..130, 10 px past the edge
    # Column 24 of 48 is the frame's middle, image column 100 (clipping at 120 would give 95).
    assert abs(int(crop[0, 24]) - 200) <= 3
    assert int(crop[0, -1]) == 2 * 119  # the edge repeated


def test_no_detect_classifies_the_whole_crop(classifier, tmp_path) -> None:
    crop = tmp_path / "crop.png"
    cv2.imwrite(str(crop), cv2.imread(str(next(iter(PLACED))), cv2.IMREAD_GRAYSCALE))
    result = predict_paths([crop], classifier, PredictOptions(detect=False))
    assert [f.box for f in result.faces] == [(0, 0, 48, 48)]


def test_tta_gives_a_distribution_too(photos, classifier) -> None:
    plain = predict_paths([photos / "astronaut.png"], classifier).faces[0]
    tta = predict_paths([photos / "astronaut.png"], classifier, PredictOptions(tta=True)).faces[0]
    assert sum(tta.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
    assert tta.box == plain.box and tta.probabilities != plain.probabilities


def test_cli_writes_json_csv_and_annotations_for_every_face(photos, model_path, tmp_path, capsys) -> None:
    out_json, out_csv, annotated = tmp_path / "faces.json", tmp_path / "faces.csv", tmp_path / "annotated"
    code = main(
        [
            "predict",
            str(photos),
            "--model",
            str(model_path),
            "--json",
            str(out_json),
            "--csv",
            str(out_csv),
            "--annotate",
            str(annotated),
        ]
    )
    assert code == EXIT_OK
    records = json.loads(out_json.read_text())
    assert records["class_names"] == list(CLASS_NAMES)
    assert len(records["faces"]) == 3  # the astronaut and the two canvas faces, found recursively
    for record in records["faces"]:
        assert set(record) == {
            *("file", "frame", "time", "track", "x", "y", "width", "height", "emotion", "emotion_smoothed"),
            *("confidence", "probabilities", "probabilities_smoothed"),
        }
        assert record["time"] is record["track"] is record["emotion_smoothed"] is None  # photos: no video fields
        assert record["frame"] is None and record["emotion"] in CLASS_NAMES
        assert record["confidence"] == max(record["probabilities"].values())
    rows = list(csv.DictReader(out_csv.open()))
    columns = ["file", "frame", "time", "track", "x", "y", "width", "height", "emotion", "emotion_smoothed"]
    assert list(rows[0]) == [*columns, "confidence", *CLASS_NAMES]
    assert [r["file"] for r in rows] == [r["file"] for r in records["faces"]]
    assert sorted(p.relative_to(annotated).as_posix() for p in annotated.rglob("*") if p.is_file()) == [
        "astronaut.png",
        "nested/two_faces.jpg",  # each copy keeps its photo's name and format
    ]
    assert "astronaut.png" in capsys.readouterr().out  # the table on stdout


def test_each_bad_input_is_reported_and_the_run_goes_on(photos, model_path, capsys) -> None:
    (photos / "notes.png").write_text("not an image")
    (photos / "truncated.jpg").write_bytes((photos / "nested" / "two_faces.jpg").read_bytes()[:200])
    cv2.imwrite(str(photos / "empty_wall.png"), np.full((200, 200), 128, dtype=np.uint8))
    code = main(["predict", str(photos), str(photos / "no_such.jpg"), "--model", str(model_path)])
    assert code == EXIT_PARTIAL
    err = capsys.readouterr().err
    assert f"missing: '{photos / 'no_such.jpg'}' does not exist" in err
    assert f"unreadable: '{photos / 'notes.png'}' is not a readable image" in err
    assert f"unreadable: '{photos / 'truncated.jpg'}' is not a readable image" in err
    assert f"no_face: no face found in '{photos / 'empty_wall.png'}'" in err
    assert "3 face(s) in 5 file(s); 4 problem(s)" in err


def test_nothing_classified_exits_3(model_path, tmp_path) -> None:
    assert main(["predict", str(tmp_path / "nothing_here"), "--model", str(model_path)]) == EXIT_NOTHING


def test_model_problems_stop_before_any_work(model_path, tmp_path, capsys) -> None:
    assert main(["predict", str(tmp_path), "--model", str(tmp_path / "missing.keras")]) == EXIT_USAGE
    assert "does not exist" in capsys.readouterr().err
    fake = tmp_path / "fake.keras"
    fake.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))  # a pickle renamed .keras
    fake.with_suffix(".json").write_text(json.dumps({"class_names": list(CLASS_NAMES)}))
    with pytest.raises(ModelFileError, match="'.*fake.keras' is not a Keras model file"):
        load_classifier(fake)
    broken_zip = tmp_path / "broken.keras"
    with zipfile.ZipFile(broken_zip, "w") as archive:
        archive.writestr("config.json", "{not json")
    broken_zip.with_suffix(".json").write_text(json.dumps({"class_names": list(CLASS_NAMES)}))
    with pytest.raises(ModelFileError, match="is not a Keras model that loads in safe mode"):
        load_classifier(broken_zip)
    copy = tmp_path / "four.keras"
    copy.write_bytes(model_path.read_bytes())
    with pytest.raises(ModelFileError, match="'.*four.json' is missing"):
        load_classifier(copy)
    copy.with_suffix(".json").write_text(json.dumps({"class_names": ["happy", "neutral", "sad", "surprise"]}))
    with pytest.raises(ModelFileError, match="predicts 7 classes but .* names 4"):
        load_classifier(copy)


@pytest.mark.parametrize(
    "flag, target, message",
    [
        ("--json", "folder", "is a folder; give a file name"),
        ("--csv", "missing/out.csv", "does not exist"),
        ("--json", "readonly/out.json", "is not writable"),
        ("--annotate", "file.txt", "exists and is not a folder"),
    ],
)
def test_output_paths_are_checked_before_any_work(photos, tmp_path, flag, target, message, capsys) -> None:
    (tmp_path / "folder").mkdir()
    (tmp_path / "readonly").mkdir(mode=0o555)
    (tmp_path / "file.txt").write_text("x")
    missing_model = tmp_path / "no_model_needed.keras"  # the check comes before the model loads
    code = main(["predict", str(photos), "--model", str(missing_model), flag, str(tmp_path / target)])
    err = capsys.readouterr().err
    if os.geteuid() == 0 and message == "is not writable":  # root may write anywhere
        assert code == EXIT_USAGE and "does not exist" in err  # it got as far as the model check
        return
    assert code == EXIT_USAGE
    assert f"error: {flag}: " in err and message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("detector", ["haar", "dlib_hog", "mtcnn"])
def test_every_detector_finds_the_astronaut_once_and_is_named_in_the_json(
    photos, model_path, tmp_path, detector
) -> None:
    out = tmp_path / f"{detector}.json"
    assert (
        main(
            [
                "predict",
                str(photos / "astronaut.png"),
                "--model",
                str(model_path),
                "--detector",
                detector,
                "--json",
                str(out),
            ]
        )
        == EXIT_OK
    )
    document = json.loads(out.read_text())
    assert document["detector"] == detector
    assert len(document["faces"]) == 1
    face = document["faces"][0]
    assert 150 < face["x"] + face["width"] / 2 < 330 and 50 < face["y"] + face["height"] / 2 < 250  # her face


def test_framing_options_change_what_is_classified(photos, model_path, tmp_path) -> None:
    def probabilities(*framing: str) -> dict:
        out = tmp_path / "faces.json"
        assert (
            main(["predict", str(photos / "astronaut.png"), "--model", str(model_path), "--json", str(out), *framing])
            == EXIT_OK
        )
        return json.loads(out.read_text())["faces"][0]["probabilities"]

    default = probabilities()
    assert probabilities("--margin", "-0.025", "--square") == default  # the defaults fer predict --help states
    assert probabilities("--margin", "0.3") != default
    assert probabilities("--no-square") != default


def test_an_unknown_detector_is_a_usage_error(photos, model_path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(photos), "--model", str(model_path), "--detector", "magic"])
    assert exit_info.value.code == EXIT_USAGE


def test_a_detector_is_built_once_and_shared_by_later_calls(photos, classifier, monkeypatch) -> None:
    import ferflow.faces.detectors as detectors

    detectors.face_detector.cache_clear()
    first = face_detector("haar")
    built = []
    original = detectors.HaarDetector.__init__
    monkeypatch.setattr(detectors.HaarDetector, "__init__", lambda self: built.append(1) or original(self))
    for _ in range(2):
        assert len(predict_paths([photos / "astronaut.png"], classifier, PredictOptions(detector="haar")).faces) == 1
    assert built == [] and face_detector("haar") is first
    with pytest.raises(ValueError, match="unknown face detector"):
        face_detector("magic")


@pytest.mark.parametrize("thresholds", [(0.6, 0.7, 0.8), Mtcnn.THRESHOLDS], ids=["package thresholds", "ours"])
def test_our_mtcnn_stages_find_the_same_boxes_as_the_package(thresholds) -> None:
    from mtcnn import MTCNN

    package, ours = MTCNN(device="CPU:0"), MtcnnTensorFlow(thresholds=thresholds, scale_factor=0.709)
    astronaut = cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2GRAY)
    # Odd sides too: their pyramid levels are padded by a repeated edge in the packed canvas.
    # 0.709: at 0.8 the package's own pyramid finds no face at some image sizes.
    for grey in (two_face_canvas(), astronaut, cv2.resize(astronaut, (333, 251), interpolation=cv2.INTER_AREA)):
        rgb = cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)
        expected = package.detect_faces(
            rgb,
            scale_factor=0.709,
            threshold_pnet=thresholds[0],
            threshold_rnet=thresholds[1],
            threshold_onet=thresholds[2],
        )
        found = ours.find(rgb)
        assert len(found) == len(expected) >= 1
        for box, face in zip(found, expected):
            x1, y1, x2, y2, confidence = box
            assert np.abs(np.round([x1, y1, x2 - x1, y2 - y1]) - face["box"]).max() <= 1
            assert confidence == pytest.approx(face["confidence"], abs=1e-3)


def test_a_photo_without_faces_or_too_small_for_the_pyramid_gives_no_boxes() -> None:
    detector = MtcnnDetector()
    assert detect_faces(skimage_data.coffee(), detector) == []  # as fer predict searches a photo
    assert detector.pnet.levels(11, 40) == []  # smaller than P-Net's 12 px window
    assert detector.find(np.full((11, 40, 3), 128, dtype=np.uint8)).shape == (0, 5)


def test_overlap_suppression_and_squaring_match_the_package_on_random_boxes() -> None:
    from mtcnn.utils.bboxes import resize_to_square, smart_nms_from_bboxes

    from ferflow.faces.mtcnn import best_first, suppress_overlaps, to_square

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 100, size=(60, 2))
    boxes = np.column_stack([corners, corners + rng.uniform(5, 40, size=(60, 2)), rng.uniform(0, 1, 60)])
    rows = np.column_stack([np.zeros(60), boxes])  # the package's layout: image index first
    for method in ("union", "min"):
        for threshold in (0.3, 0.5, 0.7):
            ordered = best_first(boxes)
            kept = ordered[suppress_overlaps(ordered, threshold, method)]
            expected = smart_nms_from_bboxes(rows, threshold, method=method)[:, 1:]
            assert 1 < len(kept) < 60
            np.testing.assert_allclose(kept, expected)
    np.testing.assert_allclose(to_square(boxes), resize_to_square(rows)[:, 1:])
    # A box dropped by a better one still drops the boxes it overlaps, as in the package.
    chain = np.array([[0, 0, 10, 10, 0.9], [4, 0, 14, 10, 0.8], [8, 0, 18, 10, 0.7]], dtype=float)
    assert list(suppress_overlaps(chain, 0.4)) == [0]


def test_pyramid_levels_are_packed_at_even_corners_without_overlap() -> None:
    from ferflow.faces.mtcnn import pack_levels

    shapes = [(144, 192), (102, 137), (72, 96), (51, 68), (36, 48), (25, 34), (18, 24), (12, 17)]
    corners, (height, width) = pack_levels(shapes)
    assert width == 192 + 138 and height < sum(h for h, _ in shapes)  # denser than one column
    canvas = np.zeros((height, width), dtype=int)
    for (top, left), (h, w) in zip(corners, shapes, strict=True):
        assert top % 2 == 0 and left % 2 == 0  # P-Net's stride-2 windows line up with the level's own
        canvas[top : top + h, left : left + w] += 1
    assert canvas.max() == 1 and canvas.sum() == sum(h * w for h, w in shapes)  # inside, no overlap


def test_a_detector_that_cannot_run_is_one_usage_error_before_the_model_loads(photos, monkeypatch, capsys) -> None:
    import ferflow.faces.detectors as detectors
    import ferflow.faces.mtcnn as mtcnn

    detectors.face_detector.cache_clear()  # a cached MTCNN would skip the check
    monkeypatch.setitem(mtcnn.MTCNN_FILES, "rnet", "lost_rnet.onnx")  # as a broken install would be
    try:
        assert main(["predict", str(photos), "--model", str(photos / "missing.keras")]) == EXIT_USAGE
    finally:
        detectors.face_detector.cache_clear()
    err = capsys.readouterr().err
    assert err.startswith("error: --detector mtcnn: the package's 'lost_rnet.onnx' is missing")
    assert "Traceback" not in err and "missing.keras" not in err  # the model was never looked at


def test_detect_size_is_each_detectors_own_unless_given(classifier, tmp_path, capsys, monkeypatch) -> None:
    photo = tmp_path / "two.png"
    cv2.imwrite(str(photo), two_face_canvas())  # 480x300
    seen = []
    for name in ("mtcnn", "haar"):
        detector = face_detector(name)
        monkeypatch.setattr(
            detector,
            "detect",
            lambda pixels, min_size, _original=detector.detect: (
                seen.append(max(pixels.shape)) or _original(pixels, min_size)
            ),
        )
        for size in (None, 100):
            predict_paths([photo], classifier, PredictOptions(detector=name, detect_size=size))
    assert seen == [320, 100, 480, 100]  # mtcnn detects at 320 px, haar at up to 640
    assert main(["predict", str(photo), "--detect-size", "47"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == "error: --detect-size must be 48 or more, got 47"


@pytest.mark.parametrize(
    "kind", ["jpeg", "png", "grey_png", "rgba_png", "palette_png", "grey_jpeg", "exif_rotated_jpeg"]
)
def test_photos_decode_once_to_the_pixels_opencv_reads(kind) -> None:
    import io

    from PIL import Image as PILImage

    image = PILImage.fromarray(skimage_data.astronaut())
    mode = {"grey_png": "L", "grey_jpeg": "L", "rgba_png": "RGBA", "palette_png": "P"}.get(kind, "RGB")
    options = {}
    if kind == "exif_rotated_jpeg":
        image = image.crop((0, 0, 400, 512))
        options["exif"] = PILImage.Exif()
        options["exif"][0x0112] = 6  # orientation: rotate 90 degrees to display
    buffer = io.BytesIO()
    image.convert(mode).save(buffer, "JPEG" if kind.endswith("jpeg") else "PNG", **options)
    data = buffer.getvalue()
    expected = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    decoded = decode_image(data, kind)
    assert decoded.shape == expected.shape == ((400, 512, 3) if kind == "exif_rotated_jpeg" else (512, 512, 3))
    np.testing.assert_array_equal(decoded, expected)


def test_a_fresh_fer_predict_keeps_tensorflows_start_up_notes_off_stderr(photos, model_path) -> None:
    import subprocess
    import sys

    # A fresh process: in this one TensorFlow has started already. MTCNN is built first.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ferflow.apps.cli",
            "predict",
            str(photos / "astronaut.png"),
            "--model",
            str(model_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == EXIT_OK, result.stderr
    assert result.stderr.strip() == "1 face(s) in 1 file(s); 0 problem(s)"


def test_large_photos_are_detected_downscaled_and_boxes_map_back() -> None:
    canvas = two_face_canvas()
    large = cv2.resize(canvas, (canvas.shape[1] * 4, canvas.shape[0] * 4), interpolation=cv2.INTER_CUBIC)
    boxes = detect_faces(large, face_detector(), min_size=30)  # 1920 px wide: detected at 320
    assert len(boxes) == 2
    for x, y, size in PLACED.values():
        assert max(iou(box, (4 * x, 4 * y, 4 * size, 4 * size)) for box in boxes) > 0.5


def test_a_progress_bar_for_folders_but_never_with_json(model_path, tmp_path, capsys) -> None:
    folder = tmp_path / "crops"
    folder.mkdir()
    for path in sorted(SAMPLE.glob("*/*.jpg"))[:8]:
        (folder / path.name).write_bytes(path.read_bytes())
    assert main(["predict", str(folder), "--no-detect", "--model", str(model_path)]) == EXIT_OK
    assert "8/8" in capsys.readouterr().err  # tqdm's count on stderr
    assert (
        main(["predict", str(folder), "--no-detect", "--model", str(model_path), "--json", str(tmp_path / "out.json")])
        == EXIT_OK
    )
    captured = capsys.readouterr()
    assert "8/8" not in captured.err and "it/s" not in captured.err and "file/s" not in captured.err
    assert len(json.loads((tmp_path / "out.json").read_text())["faces"]) == 8


def test_faces_of_many_images_are_classified_in_shared_batches(model_path, tmp_path) -> None:
    folder = tmp_path / "crops"
    folder.mkdir()
    for path in sorted(SAMPLE.glob("*/*.jpg"))[:10]:
        (folder / path.name).write_bytes(path.read_bytes())
    classifier = load_classifier(model_path)
    calls = []
    original = classifier.model.predict_on_batch
    classifier.model.predict_on_batch = lambda x: calls.append(len(x)) or original(x)
    batched = predict_paths([folder], classifier, PredictOptions(detect=False, batch_size=4))
    one_by_one = [
        predict_paths([path], classifier, PredictOptions(detect=False)).faces[0] for path in sorted(folder.iterdir())
    ]
    assert calls[:3] == [4, 4, 2]  # 10 faces in batches of at most 4, across images
    assert [f.file for f in batched.faces] == [f.file for f in one_by_one]
    for a, b in zip(batched.faces, one_by_one):
        assert a.probabilities == pytest.approx(b.probabilities, abs=1e-5)


def test_ten_crop_views_go_through_the_model_in_bounded_calls(classifier, monkeypatch) -> None:
    from ferflow.faces.predict import classify_faces
    from ferflow.model.tta import tta_views

    faces = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(SAMPLE.glob("*/*.jpg"))[:7]])
    calls = []
    original = classifier.model.predict_on_batch
    monkeypatch.setattr(classifier.model, "predict_on_batch", lambda x: calls.append(len(x)) or original(x))
    chunked = classify_faces(classifier, faces, tta=True, batch_size=16)
    monkeypatch.undo()
    assert calls == [10] * 7  # 16 views a call at most, all views of a face in the same call
    direct = [np.asarray(original(view)) for view in tta_views(faces, "tencrop", classifier.crop_size)]
    assert chunked == pytest.approx(np.mean(direct, axis=0), abs=1e-5)
    assert classify_faces(classifier, faces[:0], tta=True).shape == (0, len(CLASS_NAMES))
    with pytest.raises(ValueError, match="batch_size"):
        classify_faces(classifier, faces, tta=False, batch_size=0)


def test_video_frames_are_read_with_a_stride(classifier, tmp_path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (480, 300))
    assert writer.isOpened()
    frame = cv2.cvtColor(two_face_canvas(), cv2.COLOR_GRAY2BGR)
    for _ in range(6):
        writer.write(frame)
    writer.release()
    result = predict_paths([video], classifier, PredictOptions(video_stride=2))
    assert sorted({f.frame for f in result.faces}) == [0, 2, 4]
    assert len(result.faces) == 6 and result.problems == []
    refused = predict_paths([video], classifier)  # a video named without --video-stride
    assert refused.faces == [] and "pass --video-stride" in refused.problems[0].message
    assert predict_paths([tmp_path], classifier).files_seen == 0  # folders list videos only with a stride


@pytest.fixture(scope="module")
def trained_like_model(model_path, tmp_path_factory) -> Path:
    """A model with batch-norm statistics far from their initial values, as training leaves
    them: an export that normalised by each batch's own statistics would differ."""
    import keras

    from ferflow.model.registry import build_model

    model = build_model("vgg_quarter", 7, crop_size=44)  # batch norm after every convolution
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, variance = layer.get_weights()
            layer.set_weights(
                [
                    gamma,
                    beta,
                    rng.normal(0, 0.5, mean.shape).astype("float32"),
                    rng.uniform(0.05, 3, variance.shape).astype("float32"),
                ]
            )
    path = tmp_path_factory.mktemp("trained_like") / "fer.keras"
    model.save(path)
    path.with_suffix(".json").write_text(model_path.with_suffix(".json").read_text())
    return path


@pytest.mark.parametrize("fmt", ["onnx", "saved_model", "tflite"])
def test_exported_model_matches_keras_on_sample_faces(fmt, trained_like_model, tmp_path) -> None:
    faces = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted(SAMPLE.glob("*/*.jpg"))[:16]])
    x = faces[..., None].astype(np.float32)
    expected = load_classifier(trained_like_model).model.predict(x, verbose=0)
    out = tmp_path / f"model.{fmt}"
    assert main(["export", "--format", fmt, "--model", str(trained_like_model), "--out", str(out)]) == EXIT_OK
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries left
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(out))
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
    elif fmt == "saved_model":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(out))  # keep a reference: its variables live in this object
        got = loaded.serve(x).numpy()
    else:
        import tensorflow as tf

        interpreter = tf.lite.Interpreter(model_path=str(out))
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], x.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


# Each hostile image's outcome: a face (these decode to the sample photo) or a per-file problem.
HOSTILE_OUTCOMES = {
    "animated.gif": "face",
    "cmyk.jpg": "face",
    "exif_rotated.jpg": "face",
    "sixteen_bit.png": "face",
    "bomb.png": "unreadable",
    "over_our_limit.png": "unreadable",
    "empty.jpg": "unreadable",
    "not_an_image.jpg": "unreadable",
    "truncated.jpg": "unreadable",
    "one_pixel.png": "no_face",
    "thin_wide.png": "no_face",
    "thin_tall.png": "no_face",
}


def outcomes(faces: list[dict], problems: list[tuple[str, str]]) -> dict[str, str]:
    found = {Path(face["file"]).name: "face" for face in faces}
    return {**found, **{Path(file).name: kind for file, kind in problems}}


def test_hostile_images_each_get_a_per_file_outcome_in_python(hostile_images) -> None:
    classifier = load_classifier()  # the shipped model: the decodable images hold a real face
    result = predict_paths([next(iter(hostile_images.values())).parent], classifier)
    assert result.files_seen == len(hostile_images) == len(HOSTILE_OUTCOMES)
    got = outcomes([f.record() for f in result.faces], [(p.file, p.kind) for p in result.problems])
    assert got == HOSTILE_OUTCOMES
    assert all(f"'{p.file}'" in p.message for p in result.problems)  # each message names its file
    upright = [f for f in result.faces if f.file.endswith(("exif_rotated.jpg", "cmyk.jpg"))]
    # EXIF turned the photo upright: the same box as the unrotated copy, within the pixel or two
    # that two JPEG encodings of the photo differ by (rotated, the box would be another shape).
    assert len(upright) == 2 and np.abs(np.subtract(upright[0].box, upright[1].box)).max() <= 2


def test_hostile_images_through_the_cli_write_the_json_and_no_traceback(hostile_images, tmp_path, capsys) -> None:
    out = tmp_path / "faces.json"
    code = main(["predict", str(next(iter(hostile_images.values())).parent), "--json", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_PARTIAL and "Traceback" not in err
    document = json.loads(out.read_text())
    problems = [line.split(": ", 1) for line in err.splitlines() if line.split(":")[0] in {"unreadable", "no_face"}]
    problem_files = [(message.split("'")[1], kind) for kind, message in problems]
    assert outcomes(document["faces"], problem_files) == HOSTILE_OUTCOMES


def test_an_unwritable_annotate_subfolder_costs_that_copy_not_the_results(photos, classifier, tmp_path, capsys) -> None:
    annotated = tmp_path / "annotated"
    (annotated / "nested").parent.mkdir()
    (annotated / "nested").write_text("a file where predict wants a folder")  # fails as root too
    out = tmp_path / "faces.json"
    code = main(["predict", str(photos), "--annotate", str(annotated), "--json", str(out)])
    err = capsys.readouterr().err
    assert code == EXIT_PARTIAL and "Traceback" not in err
    assert "unwritable: annotated copy of" in err and "two_faces.jpg" in err
    files = {Path(face["file"]).name for face in json.loads(out.read_text())["faces"]}
    assert files == {"astronaut.png", "two_faces.jpg"}  # both still classified and written
    assert (annotated / "astronaut.png").is_file()


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--margin", "-0.6", "--margin must be a share from -0.4 to 2.0, got -0.6"),
        ("--margin", "-1", "--margin must be a share from -0.4 to 2.0, got -1"),
        ("--margin", "nan", "--margin must be a share from -0.4 to 2.0, got nan"),
        ("--margin", "inf", "--margin must be a share from -0.4 to 2.0, got inf"),
        ("--min-face", "0", "--min-face must be 1 or more, got 0"),
        ("--video-stride", "0", "--video-stride must be 1 or more, got 0"),
    ],
)
def test_unusable_numbers_are_refused_in_one_line(flag, value, message, tmp_path, capsys) -> None:
    assert main(["predict", str(tmp_path), flag, value]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_a_model_folder_or_a_diverged_model_is_refused_in_one_line(model_path, tmp_path, capsys) -> None:
    import keras

    assert main(["predict", str(tmp_path), "--model", str(tmp_path)]) == EXIT_USAGE
    assert (
        capsys.readouterr().err.strip() == f"error: '{tmp_path}' is a folder; pass the .onnx or .keras model "
        "file (with its .json sidecar beside it)"
    )
    model = keras.saving.load_model(model_path)
    model.set_weights([np.full_like(w, np.nan) for w in model.get_weights()])  # what a NaN loss leaves
    diverged = tmp_path / "diverged.keras"
    model.save(diverged)
    diverged.with_suffix(".json").write_text(model_path.with_suffix(".json").read_text())
    with pytest.raises(ModelFileError, match=r"gives non-finite outputs .* its training diverged"):
        load_classifier(diverged)


def test_a_face_gives_the_model_the_pixels_training_gives_it(tmp_path) -> None:
    """A colour face of another size: fer predict's crop equals the training loader's 48x48 face."""
    from PIL import Image as PILImage

    from ferflow.data.folders import load_image

    rng = np.random.default_rng(0)
    face = PILImage.open(sorted(SAMPLE.glob("happy/*.jpg"))[0]).convert("RGB").resize((97, 97))
    tinted = np.clip(np.asarray(face, dtype=np.int16) + rng.integers(-30, 30, 3), 0, 255).astype(np.uint8)
    path = tmp_path / "face.png"
    PILImage.fromarray(tinted).save(path)
    image = Image(str(path), None, decode_image(path.read_bytes(), str(path)))
    _, crops = locate_faces(image, PredictOptions(detect=False), None)
    np.testing.assert_array_equal(crops[0], load_image(path))


def test_annotated_copies_have_a_box_around_each_face(photos, model_path, tmp_path) -> None:
    from PIL import Image as PILImage

    result = predict_paths(
        [photos / "astronaut.png"], load_classifier(model_path), PredictOptions(annotate_dir=tmp_path)
    )
    (face,) = result.faces
    original = np.asarray(PILImage.open(photos / "astronaut.png").convert("RGB"))
    annotated = np.asarray(PILImage.open(tmp_path / "astronaut.png"))
    assert annotated.shape == original.shape
    x, y, w, h = face.box
    green = (annotated == (0, 200, 0)).all(axis=2)
    assert green[y + h // 2, x] and green[y + h // 2, x + w] and green[y, x + w // 2] and green[y + h, x + w // 2]
    assert not green[y + h // 2, x + w // 2]  # the face itself is not painted over


def test_without_opencv_videos_and_the_haar_detector_say_what_to_install(photos, model_path, monkeypatch, capsys):
    import sys

    from ferflow.faces.detectors import face_detector

    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    face_detector.cache_clear()
    try:
        args = ["predict", str(photos), "--model", str(model_path)]
        assert main([*args, "--video-stride", "5"]) == EXIT_USAGE
        assert capsys.readouterr().err.strip() == (
            "error: --video-stride: reading videos needs OpenCV: pip install 'ferflow[opencv]'"
        )
        assert main([*args, "--detector", "haar"]) == EXIT_USAGE
        assert capsys.readouterr().err.strip() == (
            "error: --detector haar: the haar detector needs OpenCV: pip install 'ferflow[opencv]'"
        )
        assert main(args) == EXIT_OK  # photos need no OpenCV
    finally:
        face_detector.cache_clear()


def assert_same_pixels(ours: np.ndarray, opencv: np.ndarray) -> None:
    """Equal but for the rounding of a grey level on a few pixels (OpenCV sums in another order)."""
    difference = np.abs(ours.astype(int) - opencv)
    assert ours.shape == opencv.shape and difference.max() <= 1 and (difference > 0).mean() < 0.05


@pytest.mark.parametrize(
    "shape, size",
    [((480, 640, 3), (320, 240)), ((240, 320, 3), (61, 46)), ((401, 599, 3), (213, 142)), ((37, 53), (11, 7))],
)
def test_photos_shrink_by_area_exactly_as_opencv_does(shape, size) -> None:
    """Detection copies and MTCNN's pyramid: OpenCV's INTER_AREA, which the settings were chosen with."""
    from ferflow.faces.photo import area_shrunk

    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, shape).astype(np.uint8)
    assert_same_pixels(area_shrunk(photo, *size), cv2.resize(photo, size, interpolation=cv2.INTER_AREA))
    normalized = (photo.astype(np.float32) - 127.5) / 128
    expected = cv2.resize(normalized, size, interpolation=cv2.INTER_AREA)
    np.testing.assert_allclose(area_shrunk(normalized, *size), expected, atol=1e-6)


def test_a_large_photo_is_reduced_first_and_still_shrinks_like_opencv() -> None:
    """Up to four times the detection size the copy is exact; beyond, a whole-factor reduction
    comes first (little memory), and a real photo still shrinks to almost the same pixels."""
    from ferflow.faces.photo import area_shrunk, detection_copy

    astronaut = skimage_data.astronaut()  # 512x512 RGB
    assert_same_pixels(
        detection_copy(astronaut, 160, 160), cv2.resize(astronaut, (160, 160), interpolation=cv2.INTER_AREA)
    )
    assert_same_pixels(
        area_shrunk(astronaut, 128, 128), cv2.resize(astronaut, (128, 128), interpolation=cv2.INTER_AREA)
    )
    large = cv2.resize(astronaut, (4096, 3072), interpolation=cv2.INTER_CUBIC)
    copy = detection_copy(large, 320, 240)
    expected = cv2.resize(large, (320, 240), interpolation=cv2.INTER_AREA)
    assert copy.shape == expected.shape and np.abs(copy.astype(int) - expected).mean() < 1.0


def tilted_face_photo(degrees: float) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A grey 400x300 photo holding the sample's angry face, 144 px, turned by `degrees`; and the
    upright square the face had before it was turned."""
    from PIL import Image as PILImage

    face = PILImage.open(next(iter(PLACED))).convert("L").resize((144, 144), PILImage.BICUBIC)
    turned = face.rotate(degrees, resample=PILImage.BILINEAR, expand=True, fillcolor=200)
    canvas = PILImage.new("L", (400, 300), 200)
    canvas.paste(turned, (120, 60))
    centre_x, centre_y = 120 + turned.width / 2, 60 + turned.height / 2
    return np.asarray(canvas), (round(centre_x - 72), round(centre_y - 72), 144, 144)


def test_a_turned_copy_holds_the_whole_photo_and_maps_its_points_back() -> None:
    from ferflow.faces.photo import turned_copy

    photo = np.zeros((120, 300, 3), dtype=np.uint8)
    photo[30:34, 40:44] = 255  # a dot near a corner, which a same-size copy would lose
    for degrees in (-30, 30, 45, 90):
        for max_side in (None, 200):
            copy, back = turned_copy(photo, degrees, max_side)
            assert max(copy.shape[:2]) <= (max_side or 400)
            weights = copy[..., 0].astype(float)  # the dot, blurred where the copy is shrunk
            ys, xs = np.indices(weights.shape)
            # In continuous coordinates (a box's edges), pixel i spans i..i+1: the dot's centre is (42, 32).
            centre = [(xs * weights).sum() / weights.sum() + 0.5, (ys * weights).sum() / weights.sum() + 0.5, 1.0]
            x, y = back @ np.array(centre)
            assert abs(x - 42) < 0.75 and abs(y - 32) < 0.75, (degrees, max_side, x, y)
    assert turned_copy(photo, 90)[0].shape == (300, 120, 3)
    assert turned_copy(photo, 90, 200)[0].shape == (200, 80, 3)
    assert turned_copy(photo[..., 0], 30)[0].shape == (254, 320)


def test_a_box_on_a_turned_copy_maps_back_upright_around_the_same_point() -> None:
    from ferflow.faces.detectors import upright_box
    from ferflow.faces.photo import turned_copy

    scale = 0.5  # the photo (400 x 300) was shrunk to this copy before it was turned
    small = np.zeros((150, 200), dtype=np.uint8)
    for degrees, max_side in ((30, None), (-30, 160), (90, 100)):
        copy, back = turned_copy(small, degrees, max_side)
        fitted = max(turned_copy(small, degrees)[0].shape) / max(copy.shape)  # copy pixels per canvas pixel
        to_copy = np.linalg.inv(np.vstack([back, [0, 0, 1]]))[:2]
        cx, cy = to_copy @ np.array([200 * scale, 100 * scale, 1.0])  # where the photo's (200, 100) lies
        x, y, w, h = upright_box((cx - 10, cy - 5, 20, 10), back, scale)
        assert np.allclose([x + w / 2, y + h / 2], [200, 100]), degrees
        assert np.allclose([w, h], [20 * fitted / scale, 10 * fitted / scale], rtol=0.01), degrees


def test_a_tilted_head_missed_upright_is_found_on_turned_copies_and_face_free_photos_stay_so() -> None:
    from ferflow.faces.detectors import detect_turned_faces, shrunk

    detector = face_detector()
    for degrees in (40, 45, -45):
        photo, upright = tilted_face_photo(degrees)
        assert detect_faces(photo, detector) == []
        found = detect_turned_faces(photo, detector)
        assert len(found) == 1 and iou(found[0], upright) > 0.5, (degrees, found)
        assert detect_turned_faces(photo, detector, copy=shrunk(photo, detector.detect_size)) == found
    for name in ("coffee", "rocket", "brick", "chelsea"):
        assert detect_turned_faces(getattr(skimage_data, name)(), detector) == [], name


def test_find_turned_is_an_option_and_on_with_quality_best(tmp_path) -> None:
    photo, upright = tilted_face_photo(40)
    path = tmp_path / "tilted.png"
    cv2.imwrite(str(path), photo)
    for extra, faces in (([], 0), (["--find-turned"], 1), (["--quality", "best"], 1)):
        out = tmp_path / f"faces{len(extra)}{faces}.json"
        code = main(["predict", str(path), "--json", str(out), *extra])
        records = json.loads(out.read_text())["faces"]
        assert len(records) == faces and code == (EXIT_OK if faces else EXIT_NOTHING), (extra, code)
        if faces:
            box = tuple(records[0][key] for key in ("x", "y", "width", "height"))
            assert iou(box, upright) > 0.5
