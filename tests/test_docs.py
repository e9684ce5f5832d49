"""The examples in the docs run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import ferflow.predict

REPO = Path(__file__).resolve().parents[1]


def test_the_predict_module_docstring_example_runs() -> None:
    example = "\n".join(line[4:] for line in ferflow.predict.__doc__.splitlines() if line.startswith("    "))
    result = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"PublicTest_\d+\.jpg \(\d+, \d+, \d+, \d+\) \w+ 0\.\d+", result.stdout)


def test_the_readme_python_example_runs() -> None:
    readme = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip()
