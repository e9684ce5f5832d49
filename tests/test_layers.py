"""The package's layers, from the import closure of each subpackage (tests/imports.py):

    core (io, paths, runtime, images)  <  data  <  model  <  training, evaluation, faces
    <  apps, pipeline

A layer imports only layers below it or itself, with three more rules: `data` never imports Keras,
`apps` (the photo tool) imports neither data, training nor pipeline code, and no module imports
itself through others (an import circle), even inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from conftest import REPO
from imports import closure, direct_imports

PACKAGE_DIR = REPO / "src" / "ferflow"
SUBPACKAGES = ("data", "model", "training", "evaluation", "faces", "apps", "pipeline")
ALLOWED = {
    "data": {"core", "data"},
    "model": {"core", "data", "model"},
    "training": {"core", "data", "model", "training"},
    "evaluation": {"core", "data", "model", "evaluation"},
    "faces": {"core", "model", "faces"},
    "apps": {"core", "model", "faces", "apps"},
    "pipeline": {"core", *SUBPACKAGES},
}


def layer_of(module: str) -> str:
    return module.split("/")[0] if "/" in module else "core"


def modules_of(layer: str) -> set[str]:
    return {p.relative_to(PACKAGE_DIR).with_suffix("").as_posix() for p in (PACKAGE_DIR / layer).glob("*.py")}


def test_every_module_is_in_a_known_layer() -> None:
    top = {p.stem for p in PACKAGE_DIR.glob("*.py")}
    assert top == {"__init__", "io", "paths", "runtime", "images"}  # params (pydantic, ruamel) is pipeline's
    assert {p.name for p in PACKAGE_DIR.iterdir() if (p / "__init__.py").exists()} == set(SUBPACKAGES)


@pytest.mark.parametrize("layer", SUBPACKAGES)
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    imported = closure(modules_of(layer), PACKAGE_DIR)
    above = sorted(m for m in imported if layer_of(m) not in ALLOWED[layer])
    assert above == [], f"{layer} imports {above}"


def test_the_layer_check_sees_an_import_from_above(tmp_path) -> None:
    """A copy of the package in which a data module imports the pipeline fails the check."""
    import shutil

    copy = tmp_path / "ferflow"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    dedup = copy / "data" / "dedup.py"
    dedup.write_text(dedup.read_text() + "\nfrom ferflow.pipeline.stage import main  # noqa\n")
    imported = closure({"data/dedup"}, copy)
    assert "pipeline/stage" in imported and layer_of("pipeline/stage") not in ALLOWED["data"]


def keras_imports(module: str) -> list[str]:
    tree = ast.parse((PACKAGE_DIR / f"{module}.py").read_text(encoding="utf-8"))
    names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    names += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    return [name for name in names if name.split(".")[0] in ("keras", "tensorflow")]


def test_data_code_never_imports_keras() -> None:
    used = {m: keras_imports(m) for m in closure(modules_of("data"), PACKAGE_DIR)}
    assert {m: names for m, names in used.items() if names} == {}
    code = "import sys; import " + ", ".join(f"ferflow.{m.replace('/', '.')}" for m in sorted(modules_of("data")))
    code = code.replace(".__init__", "") + "; print(sorted({'keras', 'tensorflow'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def import_circles(package_dir) -> list[list[str]]:
    """Every circle of direct imports between the package's modules (a subpackage's __init__ aside)."""
    modules = {p.relative_to(package_dir).with_suffix("").as_posix() for p in package_dir.rglob("*.py")}
    graph = {
        m: {d for d in direct_imports((package_dir / f"{m}.py").read_text(encoding="utf-8"), package_dir)}
        - {m}
        - {d for d in modules if d.endswith("__init__")}
        for m in modules
    }
    circles = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for following in sorted(graph[node]):
            if following == start:
                circles.append(path)
            elif following > start and following not in path:  # each circle once, from its least module
                walk(start, following, [*path, following])

    for module in sorted(modules):
        walk(module, module, [module])
    return circles


def test_no_module_imports_itself_through_others() -> None:
    assert import_circles(PACKAGE_DIR) == []


def test_the_circle_check_sees_a_circle(tmp_path) -> None:
    import shutil

    copy = tmp_path / "ferflow"
    shutil.copytree(PACKAGE_DIR, copy, ignore=shutil.ignore_patterns("assets", "__pycache__"))
    defaults = copy / "apps" / "defaults.py"
    defaults.write_text(defaults.read_text() + "\n\ndef late():\n    from ferflow.apps.serve import serve  # noqa\n")
    assert ["apps/defaults", "apps/serve"] in import_circles(copy)
