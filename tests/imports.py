"""Which package modules a piece of code imports, directly or through other package modules.

A module is named by its path under the package folder without `.py`: `paths`,
`data/folders`, `data/__init__` (a subpackage's `__init__` runs whenever one of its modules
is imported, so it counts as imported too).
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "ferflow"


def modules_named(dotted: str, names: list[str], package_dir: Path) -> set[str]:
    """The package modules that importing `names` from the module `dotted` (ferflow.x.y) runs."""
    parts = dotted.split(".")[1:]
    found = {"__init__"} | {"/".join([*parts[:i], "__init__"]) for i in range(1, len(parts) + 1)}
    if (package_dir / Path(*parts, "__init__.py")).exists() if parts else True:  # a package: names may be modules
        found |= {"/".join([*parts, name]) for name in names if (package_dir / Path(*parts, f"{name}.py")).exists()}
    else:
        found.add("/".join(parts))
    return {name for name in found if (package_dir / f"{name}.py").exists()}


def direct_imports(source: str, package_dir: Path) -> set[str]:
    """Package modules named by `import`/`from ... import` statements anywhere in `source`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            found |= modules_named(node.module, [alias.name for alias in node.names], package_dir)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    found |= modules_named(alias.name, [], package_dir)
    return found


def closure(modules: set[str], package_dir: Path) -> set[str]:
    """`modules` and every package module they import, transitively."""
    seen: set[str] = set()
    todo = list(modules)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split("/")
        todo += [f"{'/'.join(parts[:i])}/__init__" for i in range(1, len(parts) - (parts[-1] == "__init__"))]
        todo += direct_imports((package_dir / f"{name}.py").read_text(encoding="utf-8"), package_dir) - seen
    return seen
