"""`python -m ferflow.pipeline.preset`: presets merge into params.yaml, keep comments, and refuse bad keys."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from ferflow.pipeline import params
from ferflow.pipeline.preset import PRESETS_DIR, load_presets, main

PRESETS = load_presets(REPO / PRESETS_DIR)


@pytest.fixture
def params_file(tmp_path) -> Path:
    path = tmp_path / "params.yaml"
    shutil.copy(REPO / "params.yaml", path)
    return path


def test_full_preset_with_overrides_is_written_and_valid(params_file) -> None:
    assert main(["full", "data.source=/data/fer2013", "train.epochs=7", "--params", str(params_file)]) == 0
    written = params.load(params_file)
    assert written.train.arch == PRESETS["full"]["train"]["arch"]
    assert written.train.epochs == 7
    assert written.data.source == "/data/fer2013"
    assert written.split.strategy == "official"
    assert "# Kaggle folders" in params_file.read_text()  # comments kept


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_is_a_valid_params_file(params_file, preset) -> None:
    assert main([preset, "--params", str(params_file)]) == 0
    params.load(params_file)


def test_quick_preset_restores_the_shipped_defaults(params_file) -> None:
    shipped = yaml.safe_load(params_file.read_text())
    main(["full", "--params", str(params_file)])
    assert main(["quick", "--params", str(params_file)]) == 0
    assert yaml.safe_load(params_file.read_text()) == shipped


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.epoch=3", "train.epoch is not a known key"),
        ("train.epochs=zero", "train.epochs = 'zero' is invalid: Input should be a valid integer"),
        ("trian.epochs=3", "unknown section 'trian'"),
        ("epochs=3", "expected section.key=value"),
    ],
)
def test_bad_overrides_leave_the_file_untouched(params_file, override, message, capsys) -> None:
    before = params_file.read_text()
    assert main(["full", override, "--params", str(params_file)]) == 2
    assert message in capsys.readouterr().err
    assert params_file.read_text() == before


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_sets_the_whole_recipe(preset) -> None:
    # A preset that leaves a train key out inherits whatever params.yaml had before: the same
    # preset would then train differently from one params file to the next.
    recipe_keys = set(params.TrainParams.model_fields) - {
        "arch",
        "weights",
        "epochs",
        "batch_size",
        "learning_rate",
        "weight_decay",
        "seed",
        "monitor",
        "reduce_lr_patience",
        "reduce_lr_factor",
    }
    assert recipe_keys <= set(PRESETS[preset]["train"]), recipe_keys - set(PRESETS[preset]["train"])


def test_an_unknown_preset_names_the_known_ones(params_file, capsys) -> None:
    before = params_file.read_text()
    assert main(["fast", "--params", str(params_file)]) == 2
    assert "unknown preset 'fast'; known: ['cpu', 'full', 'quick']" in capsys.readouterr().err
    assert params_file.read_text() == before
