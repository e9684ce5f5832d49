"""The photo tool on ONNX Runtime: no TensorFlow or Keras imported, the shipped ONNX files in
step with the .keras originals (probabilities within 1e-4, the same boxes), checksums true."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import REPO, two_face_canvas
from PIL import Image as PILImage
from skimage import data as skimage_data

from ferflow.faces.detectors import detect_faces
from ferflow.faces.mtcnn import MtcnnDetector, MtcnnTensorFlow, crop_and_resize, scale_pyramid
from ferflow.faces.predict import PredictOptions, load_classifier, predict_paths
from ferflow.io import sha256_file
from ferflow.model.onnx_runtime import ASSETS, CHECKSUMS, default_threads

PRETRAINED = REPO / "models" / "pretrained"
PHOTO_SIZES = [(640, 480), (333, 251), (512, 512)]


def photos() -> list[np.ndarray]:
    """RGB photos, as the photo tool decodes them."""
    astronaut = skimage_data.astronaut()

    return [cv2.resize(astronaut, size, interpolation=cv2.INTER_AREA) for size in PHOTO_SIZES] + [
        cv2.cvtColor(two_face_canvas(), cv2.COLOR_GRAY2RGB)
    ]


SHIPPED = {"fer2013": "fer2013.onnx", "fer2013_ensemble": "fer2013_ensemble.json"}  # a model, an ensemble's card
ORIGINALS = {"fer2013": "fer2013.keras", "fer2013_ensemble": "fer2013_ensemble.json"}  # in models/pretrained


def test_the_shipped_onnx_files_match_their_checksums_and_their_keras_originals() -> None:
    recorded = json.loads(CHECKSUMS.read_text())
    assert set(recorded) == {p.name for p in ASSETS.glob("*.onnx")} and len(recorded) == 7
    assert all(sha256_file(ASSETS / name) == digest for name, digest in recorded.items())
    for name, shipped in SHIPPED.items():
        sidecar = json.loads((ASSETS / f"{name}.json").read_text())
        assert sidecar["exported_from"]["sha256"] == sha256_file(PRETRAINED / ORIGINALS[name]), (
            f"{shipped} is stale: run python -m ferflow.pipeline.onnx_export"
        )
    assert json.loads((ASSETS / "fer2013.json").read_text())["model_sha256"] == recorded["fer2013.onnx"]
    members = json.loads((ASSETS / "fer2013_ensemble.json").read_text())["onnx_members"]
    assert [m["file"] for m in members] == ["fer2013.onnx", "fer2013_member1.onnx", "fer2013_member2.onnx"]
    assert all(recorded[m["file"]] == m["sha256"] for m in members)


def test_no_shipped_file_is_over_12_mib_and_none_holds_the_whole_ensemble() -> None:
    for folder in (ASSETS, PRETRAINED):  # the ONNX files, and the Keras originals they come from
        sizes = {p.name: p.stat().st_size for p in folder.iterdir()}
        assert max(sizes.values()) <= 12 * 2**20, sizes
        assert not {"fer2013_ensemble.onnx", "fer2013_ensemble.keras"} & set(sizes)


@pytest.mark.parametrize("name", list(SHIPPED))
def test_onnx_probabilities_match_keras_within_1e_4_on_real_faces_and_photos(name) -> None:
    onnx = load_classifier(ASSETS / SHIPPED[name])
    card = json.loads((PRETRAINED / f"{name}.json").read_text())
    originals = [PRETRAINED / m["file"] for m in card.get("members", [{"file": f"{name}.keras"}])]
    keras = [load_classifier(path) for path in originals]  # the ensemble: the mean of its Keras members
    assert onnx.runtime == "onnx" and all(k.runtime == "keras" and k.class_names == onnx.class_names for k in keras)
    faces = np.stack(
        [cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((REPO / "data/sample/test").glob("*/*.jpg"))[::7]]
    )[..., None].astype(np.float32)
    np.testing.assert_allclose(
        onnx.model.predict_on_batch(faces),
        np.mean([k.model.predict_on_batch(faces) for k in keras], axis=0),
        atol=1e-4,
    )


def test_onnx_mtcnn_finds_the_boxes_tensorflow_mtcnn_finds(tmp_path) -> None:
    onnx, tensorflow = MtcnnDetector(), MtcnnTensorFlow()
    for photo in photos():
        ours, theirs = detect_faces(photo, onnx), detect_faces(photo, tensorflow)
        assert ours == theirs and len(ours) >= 1
        np.testing.assert_allclose(onnx.find(photo), tensorflow.find(photo), atol=1e-3)


def test_a_photo_folder_gives_the_same_answers_on_both_runtimes(tmp_path) -> None:
    for index, photo in enumerate(photos()):
        PILImage.fromarray(photo).save(tmp_path / f"photo{index}.png")
    onnx = predict_paths([tmp_path], load_classifier(ASSETS / "fer2013.onnx"), PredictOptions(tta=True))
    keras = predict_paths([tmp_path], load_classifier(PRETRAINED / "fer2013.keras"), PredictOptions(tta=True))
    assert [(f.file, f.box, f.emotion) for f in onnx.faces] == [(f.file, f.box, f.emotion) for f in keras.faces]
    for a, b in zip(onnx.faces, keras.faces):
        assert list(a.probabilities.values()) == pytest.approx(list(b.probabilities.values()), abs=1e-4)


def test_crop_and_resize_is_tensorflows() -> None:
    import tensorflow as tf

    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (37, 53, 3)).astype(np.float32)
    corners = rng.uniform(-0.3, 1.1, (40, 2, 2))  # some boxes reach past the image: zeros there
    boxes = np.column_stack([corners.min(axis=1), corners.max(axis=1)])[:, [0, 1, 2, 3]].astype(np.float32)
    for size in (24, 48):
        expected = tf.image.crop_and_resize(image[None], boxes, np.zeros(len(boxes), np.int32), (size, size))
        np.testing.assert_allclose(crop_and_resize(image, boxes, size), expected.numpy(), atol=5e-5)  # float32 rounding


def test_the_pyramid_is_the_mtcnn_packages() -> None:
    from mtcnn.utils.images import build_scale_pyramid

    for width, height, scale in ((640, 480, 0.8), (320, 240, 0.709), (13, 400, 0.8), (12, 12, 0.8)):
        np.testing.assert_allclose(
            scale_pyramid(width, height, 20, scale), build_scale_pyramid(width, height, 20, scale, min_size=12)
        )


def run_python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO / "src"), **env},
    )


def test_predicting_imports_neither_tensorflow_nor_keras(tmp_path) -> None:
    photo = tmp_path / "photo.jpg"
    PILImage.fromarray(photos()[0]).save(photo)
    code = (
        "import sys, json; from ferflow.apps.cli import main; "
        f"code = main(['predict', {str(photo)!r}, '--quality', 'best', '--json', {str(tmp_path / 'out.json')!r}]); "
        "print(json.dumps({'code': code, 'loaded': sorted(m for m in sys.modules "
        "if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'mtcnn', 'jax', 'torch', 'cv2'))}))"
    )
    result = run_python(code)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "loaded": []}, result.stderr
    assert result.stderr.strip().splitlines() == ["1 face(s) in 1 file(s); 0 problem(s)"]  # nothing else
    written = json.loads((tmp_path / "out.json").read_text())
    assert written["model"] == {"quality": "best", "file": "fer2013_ensemble.json", "runtime": "onnx", "tta": True}


def test_an_ensemble_card_is_refused_when_a_member_is_missing_swapped_or_elsewhere(tmp_path) -> None:
    import shutil

    from ferflow.model.sidecar import ModelFileError

    card = json.loads((ASSETS / "fer2013_ensemble.json").read_text())
    for member in card["onnx_members"]:
        shutil.copy(ASSETS / member["file"], tmp_path / member["file"])
    (tmp_path / "e.json").write_text(json.dumps(card))
    assert load_classifier(tmp_path / "e.json").model.predict_on_batch(np.zeros((1, 48, 48, 1), np.float32)).shape == (
        1,
        7,
    )
    shutil.copy(ASSETS / "fer2013.onnx", tmp_path / "fer2013_member1.onnx")  # a member replaced by another model
    with pytest.raises(ModelFileError, match="'.*fer2013_member1.onnx' is not the member that 'e.json' describes"):
        load_classifier(tmp_path / "e.json")
    card["onnx_members"][1]["file"] = "../elsewhere.onnx"
    (tmp_path / "e.json").write_text(json.dumps(card))
    with pytest.raises(ModelFileError, match="names the member '../elsewhere.onnx', which is not a file beside it"):
        load_classifier(tmp_path / "e.json")
    with pytest.raises(ModelFileError, match="is not an ensemble card"):
        load_classifier(ASSETS / "fer2013.json")


def test_a_keras_model_without_keras_is_one_line_saying_what_to_do(tmp_path) -> None:
    code = (
        "import sys; sys.modules['keras'] = None; from ferflow.apps.cli import main; "
        f"sys.exit(main(['predict', {str(tmp_path)!r}, '--model', {str(PRETRAINED / 'fer2013.keras')!r}]))"
    )
    result = run_python(code)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: '{PRETRAINED / 'fer2013.keras'}' is a Keras model, and Keras is not installed: install it "
        "(pip install 'ferflow[pipeline]'), or pass an exported .onnx model (fer export --format onnx, where "
        "Keras is installed)"
    ]


def test_threads_follow_the_setting_up_to_the_cores(monkeypatch, capsys) -> None:
    from ferflow.apps.cli import main
    from ferflow.model.onnx_runtime import available_cores

    monkeypatch.setenv("FERFLOW_THREADS", "1")
    assert default_threads() == 1
    assert load_classifier(threads=1).model.session.get_session_options().intra_op_num_threads == 1
    for setting in ("lots", str(available_cores() + 1)):
        monkeypatch.setenv("FERFLOW_THREADS", setting)
        with pytest.raises(ValueError, match=f"FERFLOW_THREADS='{setting}': give a whole number of threads"):
            default_threads()
    monkeypatch.delenv("FERFLOW_THREADS")
    assert main(["predict", ".", "--threads", "1000000"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"error: --threads must be 1 to {available_cores()} (the cores this process may use), got 1000000"
    )
