"""Strip outputs and execution counts from the notebooks given (a pre-commit hook).

Source notebooks go into git without outputs: the executed copies live under reports/. Exits 1
after stripping any notebook, so that the commit is retried with the stripped files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def strip(path: Path) -> bool:
    """Strip `path` in place; return whether anything was removed."""
    text = path.read_text(encoding="utf-8")
    notebook = json.loads(text)
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    stripped = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    if stripped == text:
        return False
    path.write_text(stripped, encoding="utf-8")
    return True


if __name__ == "__main__":
    changed = [name for name in sys.argv[1:] if strip(Path(name))]
    for name in changed:
        print(f"stripped outputs from {name}")
    sys.exit(1 if changed else 0)
