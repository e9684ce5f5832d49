"""Params validation: each kind of mistake is refused with the key, value and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ferflow import params
from ferflow.params import ParamsError

REPO = Path(__file__).resolve().parents[1]


def test_the_shipped_params_file_is_valid() -> None:
    loaded = params.load(REPO / "params.yaml")
    assert loaded["data"]["classes"] == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert loaded["train"]["class_weights"] is True


@pytest.mark.parametrize("section, values, message", [
    ("train", {"epoch": 3}, r"unknown key\(s\) \['train.epoch'\]"),
    ("train", {"epochs": "ten"}, r"train.epochs = 'ten' is invalid: expected an integer"),
    ("train", {"epochs": 2.5}, r"train.epochs = 2.5 is invalid: expected an integer"),
    ("train", {"epochs": 0}, r"train.epochs = 0 is invalid: expected a value in \[1, 10000\]"),
    ("train", {"learning_rate": True}, r"train.learning_rate = True is invalid: expected a number"),
    ("train", {"class_weights": "maybe"}, r"train.class_weights = 'maybe' is invalid: expected true or false"),
    ("train", {"arch": "resnet9000"}, r"train.arch = 'resnet9000' is invalid: expected one of \['seed_cnn'"),
    ("data", {"classes": "happy contempt"}, r"unknown name\(s\) \['contempt'\]"),
    ("data", {"classes": "happy happy"}, r"must not repeat"),
    ("data", {"classes": "happy=joy sad=joy"}, r"must not repeat"),
    ("data", {"classes": "happy=9lives"}, r"new name\(s\) \['9lives'\] must be a letter"),
    ("data", {"on_conflict": "merge"}, r"data.on_conflict = 'merge' is invalid: expected one of \['drop', 'keep_first'\]"),
    ("robustness", {"corruptions": "gaussian_noise fog"}, r"unknown or repeated name\(s\) \['fog'\]"),
    ("robustness", {"corruptions": "jpeg jpeg"}, r"unknown or repeated"),
    ("train", {"optimizer": "rmsprop"}, r"train.optimizer = 'rmsprop' is invalid"),
    ("train", {"crop_size": 50}, r"train.crop_size = 50 is invalid: expected a value in \[0, 48\]"),
    ("evaluate", {"tta": "fivecrop"}, r"evaluate.tta"),
    ("nonsense", {}, r"unknown section 'nonsense'"),
])
def test_bad_values_are_refused_with_a_clear_message(section, values, message) -> None:
    with pytest.raises(ParamsError, match=message):
        params.check(section, values)


def test_papermill_strings_are_parsed() -> None:
    parsed = params.check("train", {"class_weights": "false", "augment": "true"})
    assert parsed == {"class_weights": False, "augment": True}
    assert params.check("robustness", {"corruptions": "jpeg rotation"})["corruptions"] == ("jpeg", "rotation")
    assert params.check("data", {"classes": "sad happy"})["classes"] == ("sad", "happy")
    assert params.check("data", {"classes": "sad happy=joy"})["classes"] == ("sad", "happy=joy")


def test_a_file_with_a_missing_or_unknown_key_is_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    del raw["train"]["seed"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"missing key\(s\) \['train.seed'\]"):
        params.load(path)
    raw["trian"] = {}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"unknown section\(s\) \['trian'\]"):
        params.load(path)


def test_checking_params_does_not_load_keras() -> None:
    # Stages that never touch a model (explore, preprocess) check the whole file too.
    import subprocess
    import sys

    code = "import sys; from ferflow import params; params.load('params.yaml'); print('keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
