"""The model card: one checked format, one writer, and a copy inside every shipped ONNX file."""

from __future__ import annotations

import json
import shutil

import onnxruntime
import pytest

from ferflow.model.card import CARD_VERSION, ONNX_KEY, CardError, check_card, embed_in_onnx, write_card
from ferflow.model.onnx_runtime import ASSETS, OnnxModel
from ferflow.model.sidecar import read_sidecar

CARD = {"class_names": ["happy", "sad"], "arch": "vgg_half", "params": {"crop_size": 44}}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"trainnig_note": "typo"}, r"unknown field\(s\) \['trainnig_note'\]"),
        ({"arch": 3}, "arch must be str, got 3"),
        ({"training_seconds": "long"}, 'training_seconds must be int or float or null, got "long"'),
        ({"class_names": ["happy", "happy"]}, "class_names must be two or more different names"),
        ({"params": {"crop_size": 100}}, "params.crop_size must be 0 .* got 100"),
        ({"card_version": CARD_VERSION + 1}, f"is a version {CARD_VERSION + 1} model card; this ferflow reads up to"),
    ],
)
def test_every_field_is_checked_and_named(change, message) -> None:
    with pytest.raises(CardError, match=message):
        check_card({**CARD, **change}, "m.json")
    with pytest.raises(CardError, match="lacks \\['class_names'\\]"):
        check_card({"arch": "x"}, "m.json")


def test_the_writer_stamps_the_version_and_refuses_a_bad_card(tmp_path) -> None:
    written = write_card(tmp_path / "m.json", CARD)
    assert written["card_version"] == CARD_VERSION == json.loads((tmp_path / "m.json").read_text())["card_version"]
    with pytest.raises(CardError, match="unknown field"):
        write_card(tmp_path / "bad.json", {**CARD, "note": "kept by hand"})
    assert not (tmp_path / "bad.json").exists()


def test_every_shipped_onnx_file_carries_its_card_and_it_matches_the_sidecar() -> None:
    for path in sorted(ASSETS.glob("*.onnx")):
        card = OnnxModel(path).embedded_card()
        assert card is not None and card["card_version"] == CARD_VERSION, path.name
        sidecar = path.with_suffix(".json")
        if sidecar.exists():  # the classifiers: the sidecar is the embedded card plus the file's checksum
            assert {k: v for k, v in json.loads(sidecar.read_text()).items() if k != "model_sha256"} == card
        elif path.stem == "face_second_look":  # trained by this project's script
            assert card["arch"] == "second_look" and "benchmarks/second_look.py" in card["data"]["source"]
            assert card["exported_from"]["max_abs_difference"] <= 1e-4
        else:  # MTCNN's networks
            assert card["arch"] == f"mtcnn_{path.stem.split('_')[1]}" and "MIT License" in card["data"]["source"]
    metadata = onnxruntime.InferenceSession(str(ASSETS / "fer2013.onnx")).get_modelmeta().custom_metadata_map
    assert json.loads(metadata[ONNX_KEY])["class_names"] == read_sidecar(ASSETS / "fer2013.onnx")["class_names"]


def test_an_onnx_file_is_usable_without_its_sidecar(tmp_path) -> None:
    from ferflow.faces.predict import load_classifier

    alone = tmp_path / "fer2013.onnx"
    shutil.copy(ASSETS / "fer2013.onnx", alone)
    classifier = load_classifier(alone)
    assert classifier.class_names == tuple(read_sidecar(ASSETS / "fer2013.onnx")["class_names"])
    assert classifier.crop_size == 44


def test_an_embedded_card_is_replaced_not_added(tmp_path) -> None:
    import onnx

    copy = tmp_path / "m.onnx"
    shutil.copy(ASSETS / "mtcnn_pnet.onnx", copy)
    embed_in_onnx(copy, {**CARD, "arch": "first"})
    embed_in_onnx(copy, {**CARD, "arch": "second"})
    keys = [prop.key for prop in onnx.load(str(copy)).metadata_props]
    assert keys.count(ONNX_KEY) == 1 and OnnxModel(copy).embedded_card()["arch"] == "second"
