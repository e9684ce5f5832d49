"""The params schema: each kind of mistake is refused with the key, the value and what is allowed."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from ferflow.pipeline import params
from ferflow.pipeline.params import ParamsError


def shipped() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def test_the_shipped_params_file_is_valid_and_typed() -> None:
    loaded = params.load(REPO / "params.yaml")
    assert loaded.data.classes == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert isinstance(loaded.train.flip, bool) and isinstance(loaded.train.epochs, int)
    assert loaded.robustness.corruptions[0] == "gaussian_noise"
    assert loaded.split.fractions == {"train": 0.70, "val": 0.15, "test": 0.15}


@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "epoch", 3, r"train.epoch is not a known key; known keys of train: \['arch'"),
        ("train", "epochs", "ten", r"train.epochs = 'ten' is invalid: Input should be a valid integer"),
        ("train", "epochs", "3", r"train.epochs = '3' is invalid"),  # no string coercion
        ("train", "epochs", 2.5, r"train.epochs = 2.5 is invalid: Input should be a valid integer"),
        ("train", "epochs", 0, r"train.epochs = 0 is invalid: Input should be greater than or equal to 1"),
        ("train", "learning_rate", True, r"train.learning_rate = True is invalid"),
        ("train", "learning_rate", math.nan, r"train.learning_rate = nan is invalid: Input should be a finite number"),
        ("train", "weight_decay", math.inf, r"train.weight_decay = inf is invalid: Input should be a finite number"),
        (
            "train",
            "class_weights",
            True,
            r"train.class_weights = True is invalid: Input should be 'none', 'sqrt' or 'balanced'",
        ),
        ("train", "flip", "true", r"train.flip = 'true' is invalid"),  # YAML gives real booleans
        ("train", "arch", "resnet9000", r"train.arch = 'resnet9000' is invalid: Input should be 'seed_cnn'"),
        (
            "train",
            "optimizer",
            "adam w",
            r"train.optimizer = 'adam w' is invalid: Input should be 'adam', 'adamw' or 'sgd'",
        ),
        ("train", "crop_size", 50, r"train.crop_size = 50 is invalid: Input should be less than or equal to 48"),
        ("train", "weights", "imagenet", r"weights 'imagenet' apply only to efficientnet_b0"),
        ("train", "weights", "dlib", r"weights 'dlib' apply only to face_resnet"),
        (
            "train",
            "teacher",
            "models/none.keras",
            r"train.teacher = 'models/none.keras' is invalid: .*is not a .keras model file",
        ),
        ("train", "teacher", "params.yaml", r"train.teacher = 'params.yaml' is invalid: .*is not a .keras model file"),
        ("train", "distill_weight", 0.5, r"train.teacher \(''\) and train.distill_weight \(0.5\) go together"),
        (
            "train",
            "distill_temperature",
            0.5,
            r"train.distill_temperature = 0.5 is invalid: Input should be greater than or equal to 1",
        ),
        ("data", "classes", ["happy", "contempt"], r"unknown emotion\(s\) \['contempt'\]"),
        ("data", "classes", ["happy"], r"data.classes = \['happy'\] is invalid: List should have at least 2 items"),
        (
            "data",
            "classes",
            "angry disgust",
            r"data.classes = 'angry disgust' is invalid: Input should be a valid list",
        ),
        ("data", "classes", ["happy", "happy"], r"must not repeat"),
        ("data", "classes", ["happy=joy", "sad=joy"], r"must not repeat"),
        ("data", "classes", ["happy=9lives", "sad"], r"new name\(s\) \['9lives'\] must be a letter"),
        ("data", "classes", ["$(touch /tmp/x)angry", "sad"], r"unknown emotion"),
        (
            "data",
            "on_conflict",
            "merge",
            r"data.on_conflict = 'merge' is invalid: Input should be 'drop' or 'keep_first'",
        ),
        ("split", "test", 0.3, r"split: train \+ val \+ test = 1.15, but the fractions must sum to 1"),
        ("robustness", "corruptions", ["gaussian_noise", "fog"], r"robustness.corruptions.1 = 'fog' is invalid"),
        ("robustness", "corruptions", ["jpeg", "jpeg"], r"corruptions must not repeat"),
        ("evaluate", "tta", "flip; touch /tmp/x #", r"evaluate.tta = 'flip; touch /tmp/x #' is invalid"),
        ("train", "crop_size", 1, r"train.crop_size = 1 is invalid: a crop is 0 \(off\) or 32 to 48 pixels"),
        ("train", "crop_size", 31, r"train.crop_size = 31 is invalid: a crop is 0 \(off\) or 32 to 48 pixels"),
        (
            "data",
            "blank_threshold",
            128,
            r"data.blank_threshold = 128 is invalid: Input should be less than or equal to 32",
        ),
    ],
)
def test_bad_values_are_refused_with_a_clear_message(section, key, value, message) -> None:
    values = {**shipped()[section], key: value}
    with pytest.raises(ParamsError, match=message):
        params.check(section, values)


def test_a_teacher_needs_a_weight_and_a_weight_needs_a_teacher(monkeypatch) -> None:
    monkeypatch.chdir(REPO)  # teacher paths are relative to the project root, like every path in params
    teacher = "models/pretrained/fer2013.keras"
    with pytest.raises(ParamsError, match=r"go together: set both"):
        params.check("train", {**shipped()["train"], "teacher": teacher, "distill_weight": 0.0})
    checked = params.check("train", {**shipped()["train"], "teacher": teacher, "distill_weight": 0.5})
    assert checked.teacher == teacher and checked.distill_weight == 0.5


def test_an_unknown_section_is_refused() -> None:
    with pytest.raises(ParamsError, match=r"unknown section 'nonsense'"):
        params.check("nonsense", {})


def test_a_file_with_a_missing_or_unknown_key_or_section_is_refused(tmp_path: Path) -> None:
    raw = shipped()
    del raw["train"]["seed"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"missing key\(s\) \['train.seed'\]"):
        params.load(path)
    raw = shipped()
    raw["trian"] = {}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ParamsError, match=r"trian is not a known key; known keys: \['data'"):
        params.load(path)
    path.write_text("train: [1, 2\n")
    with pytest.raises(ParamsError, match=r"not valid YAML"):
        params.load(path)
    with pytest.raises(ParamsError, match=r"does not exist"):
        params.load(tmp_path / "absent.yaml")


def test_read_section_finds_params_yaml_from_a_subfolder() -> None:
    assert params.read_section("train", REPO / "notebooks") == shipped()["train"]
    assert params.project_root(REPO / "notebooks") == REPO


def test_checking_params_does_not_load_keras() -> None:
    # Stages that never touch a model (check, explore, preprocess) validate without the backend.
    code = "import sys; from ferflow.pipeline import params; params.load('params.yaml'); print('keras' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_params_are_read_as_dvc_reads_them_yaml_1_2() -> None:
    from dvc.utils.serialize import parse_yaml as dvc_parse_yaml

    text = "a: 1e-3\nb: 1_0\nc: yes\nd: on\ne: 0.5\nf: [x, 2]\ng: 010\nh: true\n"
    assert params.parse_yaml(text) == dvc_parse_yaml(text, "params.yaml")
    assert params.parse_yaml(text)["a"] == 0.001 and params.parse_yaml(text)["c"] == "yes"
    shipped_text = (REPO / "params.yaml").read_text()
    assert (
        params.check_text(shipped_text.replace("learning_rate: 0.02", "learning_rate: 2e-2")).train.learning_rate
        == 0.02
    )
    with pytest.raises(ParamsError, match="train.flip = 'yes' is invalid"):  # YAML 1.1 would say True
        params.check_text(shipped_text.replace("flip: true", "flip: yes"))


def test_every_architecture_takes_the_smallest_crop_the_params_allow() -> None:
    import numpy as np

    from ferflow.model.registry import ARCHITECTURES, build_model

    for arch in ARCHITECTURES:
        model = build_model(arch, 7, crop_size=params.MIN_CROP)
        assert model.predict_on_batch(np.zeros((1, 48, 48, 1), "float32")).shape == (1, 7), arch


def test_a_missing_or_broken_data_source_is_refused_before_any_stage(tmp_path) -> None:
    with pytest.raises(ParamsError, match=r"data.source = '.*nowhere' does not exist"):
        params.check_data_source(str(tmp_path / "nowhere"))
    source = tmp_path / "fer" / "train" / "happy"
    source.mkdir(parents=True)
    (source / "ok.jpg").write_bytes(b"x")
    params.check_data_source(str(tmp_path / "fer"))  # fine as it is
    (source / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    with pytest.raises(ParamsError, match=r"holds 1 broken link\(s\), such as '.*gone.jpg'.*remove") as refused:
        params.check_data_source(str(tmp_path / "fer"))
    assert "delete" not in str(refused.value) and "find " not in str(refused.value)  # advise no deleting command


def test_a_source_that_holds_the_project_is_refused(tmp_path, monkeypatch) -> None:
    project = tmp_path / "work" / "project"
    project.mkdir(parents=True)
    monkeypatch.chdir(project)
    for source in (str(tmp_path), "..", "."):
        with pytest.raises(ParamsError, match=r"contains this project .* give the data set's own folder"):
            params.check_data_source(source)


def test_a_huge_value_is_refused_and_named_not_echoed() -> None:
    values = shipped()["train"]
    values["teacher"] = "m" * 50_000_000 + ".keras"
    with pytest.raises(ParamsError) as refused:
        params.check("train", values)
    message = str(refused.value)
    assert "train.teacher = 'mmmm" in message and "(50,000,008 characters)" in message
    assert "at most 4096 characters" in message and len(message) < 300


def test_yaml_aliases_and_oversized_files_are_refused_before_they_expand() -> None:
    laughs = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]" for i in range(9)
    ]
    with pytest.raises(ParamsError, match=r"params \(params.yaml\): line 1 uses the YAML anchor or alias 'a'"):
        params.check_text("\n".join(laughs))  # 9**10 strings once expanded: never built
    with pytest.raises(ParamsError, match=r"the file has 200,001 characters; a params file has at most 100,000"):
        params.check_text("#" * 200_001)


def test_the_recipe_registries_own_the_choices_params_allow() -> None:
    """Each train choice is a registry in ferflow.training.recipe; params checks the same names."""
    from ferflow import CLASS_WEIGHTING_NAMES, OPTIMIZER_NAMES, SCHEDULE_NAMES
    from ferflow.training.recipe import CLASS_WEIGHTINGS, OPTIMIZERS, SCHEDULES, make_optimizer

    assert tuple(OPTIMIZERS) == OPTIMIZER_NAMES and tuple(SCHEDULES) == SCHEDULE_NAMES
    assert tuple(CLASS_WEIGHTINGS) == CLASS_WEIGHTING_NAMES
    for name in OPTIMIZER_NAMES:  # every name params accepts builds an optimizer of that name
        assert type(make_optimizer(name, 0.01, 0.001)).__name__.lower() == name
    with pytest.raises(ParamsError, match=r"train.optimizer = 'rmsprop' is invalid: Input should be 'adam', 'adamw'"):
        params.check("train", {**shipped()["train"], "optimizer": "rmsprop"})
