"""Stage notebooks and dvc.yaml agree: one path for params, complete code deps, clean notebooks."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import REPO
from imports import closure, direct_imports

from ferflow.pipeline.stage import STAGES, checked_path

PACKAGE_DIR = REPO / "src" / "ferflow"


def load_dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def notebook_path(stage: str) -> Path:
    return REPO / "notebooks" / f"{STAGES[stage][0]}.ipynb"


def code_of(stage: str) -> str:
    notebook = nbformat.read(notebook_path(stage), as_version=4)
    return "\n".join(c.source for c in notebook.cells if c.cell_type == "code")


def parameters_cell(notebook) -> nbformat.NotebookNode:
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "exactly one cell must be tagged 'parameters'"
    return tagged[0]


def assigned_names(source: str) -> set[str]:
    return {
        target.id
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def missing_code_deps(deps: list[str], roots: set[str]) -> list[str]:
    """Package modules that `roots` import, directly or not, and that `deps` does not list."""
    needed = closure(roots, PACKAGE_DIR)
    return sorted(f"src/ferflow/{m}.py" for m in needed if f"src/ferflow/{m}.py" not in deps)


def test_dvc_yaml_has_the_check_stage_then_the_five_notebook_stages_then_the_report() -> None:
    assert list(load_dvc_yaml()["stages"]) == ["check", *STAGES, "report"]


def test_no_stage_command_interpolates_a_value() -> None:
    # ${...} in a cmd would put params text into a shell command line.
    for name, stage in load_dvc_yaml()["stages"].items():
        assert "${" not in str(stage["cmd"]), name


def test_the_check_stage_writes_one_file_per_section() -> None:
    from ferflow.pipeline.params import SECTIONS

    stage = load_dvc_yaml()["stages"]["check"]
    assert stage["cmd"] == "PYTHONPATH=src python -m ferflow.pipeline.stage check"
    outs = [next(iter(o)) for o in stage["outs"]]
    assert outs == [str(checked_path(section)) for section in SECTIONS]
    assert stage["params"] == [{"params.yaml": None}]


@pytest.mark.parametrize("stage_name", STAGES)
def test_stage_hands_its_notebook_exactly_the_sections_it_declares(stage_name: str) -> None:
    stage = load_dvc_yaml()["stages"][stage_name]
    notebook_name, sections = STAGES[stage_name]
    notebook = nbformat.read(notebook_path(stage_name), as_version=4)
    assert stage["cmd"] == f"PYTHONPATH=src python -m ferflow.pipeline.stage run {stage_name}"
    assert assigned_names(parameters_cell(notebook).source) == set(sections)
    assert stage["params"] == list(sections)
    for section in sections:
        assert str(checked_path(section)) in stage["deps"], "the checked section orders the stage after check"
    assert f"notebooks/{notebook_name}.ipynb" in stage["deps"]
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage["outs"]]
    assert f"reports/{notebook_name}.ipynb" in outs and f"reports/{notebook_name}.html" in outs


@pytest.mark.parametrize("stage_name", STAGES)
def test_source_notebook_is_committed_clean(stage_name: str) -> None:
    notebook = nbformat.read(notebook_path(stage_name), as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, "strip outputs before committing"
    # papermill stops with "No kernel name found" without these.
    assert notebook.metadata.kernelspec.name == "python3"
    assert notebook.metadata.language_info.name == "python"


@pytest.mark.parametrize("stage_name", STAGES)
def test_notebooks_define_no_functions(stage_name: str) -> None:
    tree = ast.parse(code_of(stage_name))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))], (
        "put logic in src/ferflow with a test"
    )


def test_report_stage_depends_on_what_the_page_shows() -> None:
    from ferflow.pipeline.report import FIGURES

    stage = load_dvc_yaml()["stages"]["report"]
    for path in FIGURES.values():
        assert path in stage["deps"]
    assert stage["outs"] == ["reports/index.html"]


@pytest.mark.parametrize("stage_name", [*STAGES, "check", "report"])
def test_stage_deps_list_every_module_it_imports_directly_or_not(stage_name: str) -> None:
    stage = load_dvc_yaml()["stages"][stage_name]
    if stage_name in STAGES:
        roots = direct_imports(code_of(stage_name), PACKAGE_DIR) | {"pipeline/stage"}  # the runner too
    else:
        roots = {"pipeline/stage" if stage_name == "check" else "pipeline/report"}
    assert missing_code_deps(stage["deps"], roots) == [], f"add these to the {stage_name} stage's deps"


def test_the_deps_check_catches_a_module_imported_only_indirectly() -> None:
    deps = load_dvc_yaml()["stages"]["preprocess"]["deps"]
    without_dedup = [d for d in deps if d != "src/ferflow/data/dedup.py"]
    assert "src/ferflow/data/dedup.py" in missing_code_deps(without_dedup, {"data/preprocess"})  # preprocess -> dedup


@pytest.mark.parametrize("stage_name", STAGES)
def test_a_notebook_run_by_hand_from_notebooks_reads_its_params_from_the_file(stage_name: str) -> None:
    import subprocess
    import sys

    notebook = nbformat.read(notebook_path(stage_name), as_version=4)
    code_cells = [c for c in notebook.cells if c.cell_type == "code"]
    start = code_cells.index(parameters_cell(notebook))
    setup = "\n".join(c.source for c in code_cells[start : start + 2])  # the parameters cell and the set-up
    _, sections = STAGES[stage_name]
    probe = setup + "\nimport os, json\nprint(json.dumps([os.getcwd(), " + ", ".join(sections) + "]))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO / "notebooks", capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    cwd, *values = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(cwd) == REPO  # paths in the notebook are the project's
    shipped = yaml.safe_load((REPO / "params.yaml").read_text())
    assert values == [shipped[section] for section in sections]


def test_every_path_in_ferflow_paths_is_declared_in_dvc_yaml() -> None:
    from ferflow import paths

    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    declared = set()
    for stage in stages.values():
        for entry in stage.get("deps", []) + stage.get("outs", []) + stage.get("metrics", []):
            declared.add(next(iter(entry)) if isinstance(entry, dict) else entry)
    constants = {value for name, value in vars(paths).items() if name.isupper() and isinstance(value, str)}
    folders = {paths.SAMPLE, paths.PRETRAINED, paths.CHECKED_PARAMS, paths.REPORTS, paths.NOTEBOOKS, paths.PRESETS}
    constants -= folders | {paths.PARAMS}  # folders around the outputs and inputs; params.yaml is under params:
    made = [paths.metrics(stage) for stage in ("evaluate", "robustness")]
    made += [paths.results(stage) for stage in ("explore", "preprocess", "train", "evaluate", "latency", "robustness")]
    made += [paths.figure(name) for name in ("training_curves", "confusion_matrix_normalised", "robustness_heatmap")]
    assert sorted((constants | set(made)) - declared) == []
    assert any(path.startswith(paths.CHECKED_PARAMS + "/") for path in declared)
    assert any(path.startswith(paths.REPORTS + "/") for path in declared)


def test_the_pre_commit_hook_strips_outputs_and_says_so(tmp_path) -> None:
    import subprocess
    import sys

    executed = json.loads((REPO / "notebooks" / "02_preprocess.ipynb").read_text())
    code = next(cell for cell in executed["cells"] if cell["cell_type"] == "code")
    code["outputs"], code["execution_count"] = [{"output_type": "stream", "name": "stdout", "text": ["x\n"]}], 3
    notebook = tmp_path / "executed.ipynb"
    notebook.write_text(json.dumps(executed, indent=1, ensure_ascii=False) + "\n")
    hook = [sys.executable, str(REPO / ".ci" / "strip_notebook_outputs.py"), str(notebook)]
    first = subprocess.run(hook, capture_output=True, text=True)
    assert first.returncode == 1 and "stripped outputs from" in first.stdout
    assert notebook.read_text() == (REPO / "notebooks" / "02_preprocess.ipynb").read_text()
    assert subprocess.run(hook, capture_output=True, text=True).returncode == 0  # nothing left to strip
