"""Stage notebooks and dvc.yaml agree: tagged parameters, matching names, no outputs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
STAGES = {
    "explore": "01_explore",
    "preprocess": "02_preprocess",
    "train": "03_train",
    "evaluate": "04_evaluate",
    "robustness": "05_robustness",
}
PASSED = re.compile(r'-p\s+(\w+)\s+"?\$\{([\w.]+)\}"?')


def load_dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def stage_command(stage: dict) -> str:
    cmd = stage["cmd"]
    return " ".join(cmd) if isinstance(cmd, list) else cmd


def parameters_cell(notebook) -> nbformat.NotebookNode:
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def assigned_names(source: str) -> set[str]:
    return {target.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}


def expand_sections(declared: list[str]) -> list[str]:
    """Stage params as keys: a whole section listed stands for every key in it."""
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    keys = []
    for entry in declared:
        keys += [entry] if "." in entry else [f"{entry}.{key}" for key in params[entry]]
    return keys


def test_dvc_yaml_has_the_five_notebook_stages_in_order_then_the_report() -> None:
    assert list(load_dvc_yaml()["stages"]) == [*STAGES, "report"]


@pytest.mark.parametrize("stage_name, notebook_name", STAGES.items())
def test_stage_notebook_matches_its_dvc_stage(stage_name: str, notebook_name: str) -> None:
    stage = load_dvc_yaml()["stages"][stage_name]
    path = REPO / "notebooks" / f"{notebook_name}.ipynb"
    notebook = nbformat.read(path, as_version=4)
    command = stage_command(stage)

    passed = dict(PASSED.findall(command))
    assert set(passed) == assigned_names(parameters_cell(notebook).source)
    assert sorted(passed.values()) == sorted(expand_sections(stage["params"]))  # each key read is declared

    assert f"PYTHONPATH=src papermill notebooks/{notebook_name}.ipynb reports/{notebook_name}.ipynb" in command
    assert f"nbconvert --log-level WARN --to html reports/{notebook_name}.ipynb" in command
    assert f"notebooks/{notebook_name}.ipynb" in stage["deps"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    assert f"reports/{notebook_name}.ipynb" in outs and f"reports/{notebook_name}.html" in outs


@pytest.mark.parametrize("notebook_name", STAGES.values())
def test_source_notebook_is_committed_clean(notebook_name: str) -> None:
    notebook = nbformat.read(REPO / "notebooks" / f"{notebook_name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs before committing"
    # papermill stops with "No kernel name found" without these.
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.metadata.language_info.name == "python"


def test_report_stage_depends_on_what_the_page_shows() -> None:
    from ferflow.report import FIGURES

    stage = load_dvc_yaml()["stages"]["report"]
    for path in FIGURES.values():
        assert path in stage["deps"]
    assert "src/ferflow/report.py" in stage["deps"]
    assert stage["outs"] == ["reports/index.html"]


@pytest.mark.parametrize("stage_name", STAGES)
def test_stage_deps_list_the_package_modules_its_notebook_imports(stage_name: str) -> None:
    stage = load_dvc_yaml()["stages"][stage_name]
    notebook = nbformat.read(REPO / "notebooks" / f"{STAGES[stage_name]}.ipynb", as_version=4)
    source = "\n".join(c.source for c in notebook.cells if c.cell_type == "code")
    imported = set(re.findall(r"from fer\.(\w+) import", source))
    imported |= {name.strip() for names in re.findall(r"from ferflow import ([\w, ]+)", source)
                 for name in names.split(",") if (REPO / "src" / "ferflow" / f"{name.strip()}.py").exists()}
    for module in imported:
        assert f"src/ferflow/{module}.py" in stage["deps"], f"{stage_name} imports fer.{module}"


def test_every_passed_param_exists_in_params_yaml() -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for name, stage in load_dvc_yaml()["stages"].items():
        if name == "report":
            continue  # it shows the whole file
        for key in expand_sections(stage["params"]):
            section, field = key.split(".")
            assert field in params[section], f"{name} reads {key}, which params.yaml lacks"
