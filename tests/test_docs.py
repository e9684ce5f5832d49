"""The examples in the docs run as written."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import yaml
from conftest import REPO

import ferflow.faces.predict
from ferflow import CLASS_NAMES


def test_the_predict_module_docstring_example_runs() -> None:
    example = "\n".join(line[4:] for line in ferflow.faces.predict.__doc__.splitlines() if line.startswith("    "))
    result = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r"PublicTest_\d+\.jpg \(\d+, \d+, \d+, \d+\) \w+ 0\.\d+", result.stdout)


def test_the_readme_python_example_runs() -> None:
    readme = (REPO / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    result = subprocess.run([sys.executable, "-c", example], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    emotions = "|".join(CLASS_NAMES)
    # Three sample crops, each its whole 48x48 image (no detection), a known emotion and a confidence.
    assert len(lines) == 3, lines
    # Run anywhere else, the example says why it found nothing instead of printing nothing.
    elsewhere = subprocess.run([sys.executable, "-c", example], cwd=REPO / "docs", capture_output=True, text=True)
    assert elsewhere.stdout.strip() == "missing 'data/sample/test/surprise' does not exist", elsewhere.stderr[-2000:]
    for line in lines:
        assert re.fullmatch(rf"data/sample/test/surprise/\S+\.(jpg|png) \(0, 0, 48, 48\) ({emotions}) 0\.\d+", line), (
            line
        )


README_LINK = re.compile(r"\]\(([^)#]+)(#[^)]*)?\)")
NOT_FOR_USERS = re.compile(  # \s+: a phrase wrapped across a line counts too
    r"\bissue\s+#?\d+|\.\./shared|/work/|seed\s+projects?\b|\bthis\s+session\b|\bsessions\s+ago\b", re.IGNORECASE
)


def test_the_readme_is_short_and_its_local_links_and_pictures_exist() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    targets = [target for target, _ in README_LINK.findall(readme) if not target.startswith(("http:", "https:"))]
    assert len(targets) >= 10  # the docs pages and the two pictures
    missing = [target for target in targets if not (REPO / target).exists()]
    assert missing == []


def test_no_text_refers_to_issues_sessions_or_folders_outside_the_repo() -> None:
    assert NOT_FOR_USERS.search("as the tracker's issue\n#12 says") and NOT_FOR_USERS.search("this\n  session")
    texts = [
        REPO / "README.md",
        *(REPO / "docs").rglob("*.md"),
        *(REPO / "notebooks").glob("*.ipynb"),
        *(REPO / "src/ferflow").rglob("*.py"),
        *(REPO / "benchmarks").rglob("*.py"),
        *(REPO / "benchmarks/results").rglob("*.md"),
        *(REPO / "benchmarks/results").rglob("params.yaml"),
        *(REPO / "benchmarks/results").rglob("*.json"),
        *(REPO / "benchmarks/results").rglob("*.csv"),
        *(REPO / "src/ferflow/assets").glob("*.json"),
        *(REPO / "models/pretrained").glob("*.json"),
    ]
    found = [
        f"{path.relative_to(REPO)}: {match.group(0)}"
        for path in texts
        for match in NOT_FOR_USERS.finditer(path.read_text(encoding="utf-8"))
    ]
    assert found == []


def test_every_docs_page_is_in_the_site_navigation_and_the_site_builds_strictly(tmp_path) -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    in_nav = {next(iter(entry.values())) for entry in config["nav"]}
    assert in_nav == {path.name for path in (REPO / "docs").glob("*.md")}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "site/reports/index.html").exists()


def test_the_version_is_written_once_and_the_changelog_starts_at_it() -> None:
    import importlib.metadata
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert "version" not in project and project["dynamic"] == ["version"]
    assert importlib.metadata.version("ferflow") == ferflow.__version__
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(r"^## (\S+)", changelog, re.M).group(1) == ferflow.__version__


def test_the_python_floor_is_the_one_ci_tests() -> None:
    import tomllib

    floor = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    workflow = yaml.safe_load((REPO / ".github" / "workflows" / "ci.yml").read_text())
    tested = workflow["jobs"]["ci"]["strategy"]["matrix"]["python-version"]
    assert floor == f">={tested[0]}" and f"Python {tested[0]} to {tested[-1]}" in (REPO / "README.md").read_text()


def test_the_quality_help_quotes_the_shipped_models_test_accuracy() -> None:
    """`fer predict --help` says what each --quality reaches on FER-2013's test faces: the single
    model's centre crop and the ensemble's ten-crop, as their cards record them."""
    import argparse

    from ferflow.apps.cli import _model_arguments

    parser = argparse.ArgumentParser()
    _model_arguments(parser)
    help_text = " ".join(parser.format_help().split())
    assets = REPO / "src" / "ferflow" / "assets"
    single = json.loads((assets / "fer2013.json").read_text())["test_metrics"]["accuracy"]
    card = json.loads((assets / "fer2013_ensemble.json").read_text())
    ensemble, members = card["test_metrics"]["tencrop_accuracy"], len(card["onnx_members"])
    assert f"fast: the shipped single model ({single:.1%} of FER-2013's test faces right" in help_text
    count = {2: "two", 3: "three", 4: "four", 5: "five"}[members]
    assert f"best: {count} models averaged over ten crops of each face ({ensemble:.1%};" in help_text
