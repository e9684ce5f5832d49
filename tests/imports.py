"""Which package modules a piece of code imports, directly or through other package modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = "ferflow"


def direct_imports(source: str, package_dir: Path) -> set[str]:
    """Package modules named by `import`/`from ... import` statements anywhere in `source`."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE:
            parts = node.module.split(".")
            if len(parts) > 1:
                found.add(parts[1])
            else:  # from ferflow import a, b: modules where a file exists, else the package itself
                found |= {alias.name for alias in node.names if (package_dir / f"{alias.name}.py").exists()}
            found.add("__init__")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == PACKAGE:
                    found |= {"__init__", *parts[1:2]}
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
        todo += direct_imports((package_dir / f"{name}.py").read_text(encoding="utf-8"), package_dir) - seen
    return seen
