"""End to end: `dvc repro` in a temporary git copy of the repo, on tiny real data.

One module-scoped run makes a committed baseline. Every test that changes something works
in its own clone of it (sharing the DVC cache, so nothing is retrained to get there), so the
tests do not depend on each other or on their order: a no-op repro, a train-param change
with `dvc metrics diff`, a forced rerun for determinism, a mistyped and a hostile param, a
queued two-point sweep, a push/pull round trip to a remote, a run taught by the baseline's
model (knowledge distillation), and a train stage killed mid-run that resumes on the next
`dvc repro`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import REPO, copy_tiny_source

from ferflow import CLASS_NAMES

pytestmark = pytest.mark.e2e
# The module is most of the suite's time, so its tests go to the two pytest-xdist workers in two
# halves of similar cost (`--dist loadgroup`); each worker builds the baseline once.
FIRST_HALF = pytest.mark.xdist_group("e2e_first_half")  # the baseline, the sweep, the refusals
SECOND_HALF = pytest.mark.xdist_group("e2e_second_half")  # the reruns: param change, forced, teacher, killed

STAGES = ("check", "explore", "preprocess", "train", "evaluate", "robustness", "report")
AFTER_TRAIN = {"train", "evaluate", "robustness", "report"}
QUALITY_METRICS = (
    "metrics/evaluate.json",
    "metrics/robustness.json",
    "results/preprocess.json",
    "results/train.json",
    "results/evaluate.json",
    "results/robustness.json",
)  # not latency


def run(args: list[str], cwd: Path, check: bool = True) -> str:
    env = dict(os.environ)
    # papermill, jupyter and the kernel must come from the environment running the tests.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.setdefault("KERAS_BACKEND", "tensorflow")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    output = result.stdout + result.stderr
    if check:
        assert result.returncode == 0, f"{' '.join(args)} failed:\n{output[-6000:]}"
    else:
        assert result.returncode != 0, f"{' '.join(args)} should have failed:\n{output[-3000:]}"
    return output


def commit(repo: Path, message: str) -> None:
    run(["git", "add", "-A"], repo)
    run(["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "commit", "-qm", message], repo)


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd)


def tracked_metric_values(repo: Path) -> dict[str, float]:
    """Every value in the files dvc.yaml declares as metrics, flattened as `dvc metrics show` does."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    values = {}
    for stage in stages.values():
        for entry in stage.get("metrics", []):
            name = next(iter(entry)) if isinstance(entry, dict) else entry
            values.update({f"{name}:{key}": value for key, value in flatten(json.loads((repo / name).read_text()))})
    return values


def flatten(data: dict, prefix: str = ""):
    for key, value in data.items():
        if isinstance(value, dict):
            yield from flatten(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '(\w+)'", output))


def set_param(repo: Path, section: str, key: str, value) -> None:
    path = repo / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params[section][key] = value
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def read_metrics(repo: Path) -> dict:
    return {name: json.loads((repo / name).read_text()) for name in QUALITY_METRICS}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A git repo holding the project's files, tiny data and a tiny profile; repro'd once."""
    repo = tmp_path_factory.mktemp("pipeline")
    # Tracked files plus new ones not yet committed (but not ignored ones): the code under test.
    tracked = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\0")
    for name in filter(None, tracked):
        source = REPO / name
        if source.is_file() and not name.startswith("data/sample/"):
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, repo / name)
    tiny = repo / "data" / "tiny"
    copy_tiny_source(tiny, {name: 10 for name in CLASS_NAMES}, "train")
    copy_tiny_source(tiny, {name: 2 for name in CLASS_NAMES}, "test")
    set_param(repo, "data", "source", "data/tiny")
    for key, value in {"epochs": 2, "batch_size": 16, "early_stopping_patience": 2}.items():
        set_param(repo, "train", key, value)
    set_param(repo, "evaluate", "latency_repeats", 3)
    run(["git", "init", "-q"], repo)
    commit(repo, "tiny")
    output = dvc("repro", cwd=repo)
    assert stages_run(output) == set(STAGES)
    COLD_REPRO_OUTPUT[repo] = output
    commit(repo, "baseline")
    return repo


COLD_REPRO_OUTPUT: dict[Path, str] = {}  # what the baseline's cold `dvc repro` printed


@pytest.fixture
def workspace(project: Path, tmp_path: Path) -> Path:
    """A fresh clone of the baseline, its DVC outputs checked out from the project's cache."""
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    dvc("cache", "dir", "--local", str(project / ".dvc" / "cache"), cwd=clone)
    dvc("checkout", cwd=clone)
    return clone


def wait_for_line(process: subprocess.Popen, text: str, seconds: float) -> bool:
    """Read the process's stdout until a line holds `text` (True), it ends or `seconds` pass (False)."""
    import queue
    import threading

    lines: queue.Queue = queue.Queue()
    threading.Thread(
        target=lambda: [lines.put(line) for line in process.stdout] + [lines.put(None)], daemon=True
    ).start()
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            line = lines.get(timeout=left)
        except queue.Empty:
            return False
        if line is None:
            return False
        if text in line:
            return True
    return False


def processes_in(folder: Path, within_seconds: float) -> list:
    """Processes still running in `folder` (by working directory) after waiting up to `within_seconds`."""
    import psutil

    deadline = time.monotonic() + within_seconds
    while True:
        found = []
        for process in psutil.process_iter(["cwd"]):
            cwd = process.info.get("cwd")
            if cwd and Path(cwd).is_relative_to(folder) and process.pid != os.getpid():
                found.append(process)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.5)


def declared_outputs(repo: Path) -> list[Path]:
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for entry in stage.get("outs", []) + stage.get("metrics", []):
            paths.append(repo / (next(iter(entry)) if isinstance(entry, dict) else entry))
    return paths


@FIRST_HALF
def test_repro_writes_every_output_and_report_without_errors(project: Path) -> None:
    for path in declared_outputs(project):
        assert path.exists(), f"{path.relative_to(project)} was not written"
    notebook_stages = [s for s in STAGES if s not in ("check", "report")]
    for number, stage in enumerate(notebook_stages, start=1):
        executed = nbformat.read(project / "reports" / f"0{number}_{stage}.ipynb", as_version=4)
        errors = [
            o for c in executed.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"
        ]
        assert errors == [], f"{stage}: {errors}"
        report = (project / "reports" / f"0{number}_{stage}.html").read_text()
        assert len(report) > 10_000 and 'href="index.html"' in report, stage  # a way back to the index
        assert "read_section" not in report, stage  # no code: every notebook's first code cell calls it
    index = (project / "reports/index.html").read_text()
    assert index.count('<img src="data:image/png;base64,') == 5 and "03_train.html" in index
    evaluation = json.loads((project / "results/evaluate.json").read_text())
    assert evaluation["n_samples"] == len((project / "plots/confusion.csv").read_text().strip().splitlines()) - 1
    sidecar = json.loads((project / "models/model.json").read_text())
    assert sidecar["class_names"] == list(CLASS_NAMES)
    assert sidecar["input"]["shape"] == [48, 48, 1]


@FIRST_HALF
def test_a_cold_repro_prints_stages_and_epochs_not_tables_or_warnings(project: Path) -> None:
    lines = COLD_REPRO_OUTPUT[project].splitlines()
    assert len(lines) < 100, "\n".join(lines)
    assert "epoch 2/2" in "\n".join(lines)  # one line per epoch reaches the terminal
    noise = [line for line in lines if "Kernel is running over TCP" in line or "│" in line or "Traceback" in line]
    assert noise == []


@FIRST_HALF
def test_repro_right_after_a_clone_of_the_baseline_runs_nothing(workspace: Path) -> None:
    output = dvc("repro", cwd=workspace)
    assert stages_run(output) == set()
    assert "up to date" in output


@FIRST_HALF
def test_few_metrics_are_tracked_and_test_accuracy_leads_exp_show_at_200_columns(workspace: Path) -> None:
    tracked = tracked_metric_values(workspace)
    assert 5 <= len(tracked) <= 15, tracked
    assert next(iter(tracked)) == "metrics/evaluate.json:acc_test"
    assert not any("ms" in key or "per_s" in key or "seconds" in key for key in tracked)  # no timings
    result = subprocess.run(
        [sys.executable, "-m", "dvc", "exp", "show", "--no-pager"],
        cwd=workspace,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=True,
    )
    header = next(line for line in result.stdout.splitlines() if "Experiment" in line)
    assert "acc_test" in header, result.stdout
    accuracy = f"{tracked['metrics/evaluate.json:acc_test']:.5f}".rstrip("0")
    assert accuracy[:6] in result.stdout, result.stdout


@SECOND_HALF
def test_train_param_change_reruns_only_train_and_after_and_shows_in_metrics_diff(workspace: Path) -> None:
    old = yaml.safe_load((workspace / "params.yaml").read_text())["train"]["learning_rate"]
    set_param(workspace, "train", "learning_rate", 0.01)
    output = dvc("repro", cwd=workspace)
    assert stages_run(output) == {"check"} | AFTER_TRAIN
    assert "summary of this run, against the committed metrics:" in output
    assert re.search(r"test accuracy +0\.\d{4} +committed 0\.\d{4} \([+-]0\.\d{4}\)", output), output
    rows = dvc("metrics", "diff", "--all", cwd=workspace).strip().splitlines()  # changed or not, every metric
    assert len(rows) <= 1 + 15 and "acc_test" in "\n".join(rows[:4]), rows
    diff = json.loads(dvc("metrics", "diff", "--json", cwd=workspace))
    changed = {path for path, values in diff.items() if any(v.get("diff") for v in values.values())}
    assert "metrics/evaluate.json" in changed, diff
    params_diff = json.loads(dvc("params", "diff", "--json", cwd=workspace))
    change = params_diff["params.yaml"]["train.learning_rate"]
    assert (change["old"], change["new"]) == (old, 0.01)


@SECOND_HALF
def test_the_readmes_experiment_loop_ends_in_a_clean_workspace(workspace: Path) -> None:
    """The README's loop, as written, after a committed baseline (the workspace is one)."""
    import shlex

    readme = (REPO / "README.md").read_text()
    loop = re.search(r"## The experiment loop.*?```bash\n(.*?)```", readme, re.S).group(1).splitlines()
    experiment = next(line for line in loop if line.startswith("dvc exp run")).split("#")[0]
    restore = next(line for line in loop if "back to your baseline" in line).split("#")[0]
    before = read_metrics(workspace)
    dvc(*shlex.split(experiment)[1:], cwd=workspace)
    shown = subprocess.run(  # as a 200-column terminal shows it: the changed param is not folded away
        [sys.executable, "-m", "dvc", "exp", "show", "--only-changed", "--no-pager"],
        cwd=workspace,
        env={**os.environ, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "train.learning_rate" in shown, shown
    for command in restore.split("&&"):
        words = shlex.split(command)
        run([sys.executable, "-m", "dvc", *words[1:]] if words[0] == "dvc" else words, workspace)
    assert "Data and pipelines are up to date" in dvc("status", cwd=workspace)
    assert run(["git", "status", "--porcelain"], workspace).strip() == ""
    assert read_metrics(workspace) == before


@SECOND_HALF
def test_forced_rerun_with_the_same_params_gives_identical_metrics(workspace: Path) -> None:
    before = read_metrics(workspace)
    output = dvc("repro", "--force", "--single-item", "train", "evaluate", "robustness", cwd=workspace)
    assert {"train", "evaluate", "robustness"} <= stages_run(output)
    assert read_metrics(workspace) == before


def outputs_snapshot(repo: Path) -> dict[str, bytes]:
    return {str(path.relative_to(repo)): path.read_bytes() for path in declared_outputs(repo) if path.is_file()}


@SECOND_HALF
def test_a_teacher_model_distills_into_the_next_training_run(workspace: Path) -> None:
    # The baseline's own model teaches a fresh run: soft targets change what the student learns.
    for suffix in (".keras", ".json"):
        shutil.copy2(workspace / f"models/model{suffix}", workspace / f"teacher{suffix}")
    assert json.loads((workspace / "teacher.json").read_text())["class_names"] == list(CLASS_NAMES)
    before = json.loads((workspace / "results/train.json").read_text())
    set_param(workspace, "train", "teacher", "teacher.keras")
    set_param(workspace, "train", "distill_weight", 0.7)
    output = dvc("repro", "train", cwd=workspace)
    assert stages_run(output) == {"check", "train"}
    assert "its top class is the label on" in output  # the teacher cell ran and said so
    sidecar = json.loads((workspace / "models/model.json").read_text())
    from ferflow.io import sha256_file

    assert sidecar["data"]["teacher"]["sha256"] == sha256_file(workspace / "teacher.keras")
    assert 0.0 <= sidecar["data"]["teacher"]["train_agreement"] <= 1.0
    assert json.loads((workspace / "results/train.json").read_text()) != before


@FIRST_HALF
@pytest.mark.parametrize(
    "section, key, value, message",
    [
        ("train", "epcohs", 50, "train.epcohs is not a known key"),
        ("train", "epochs", "abc", "train.epochs = 'abc' is invalid"),
        ("train", "learning_rate", float("nan"), "train.learning_rate = nan is invalid"),
        ("train", "crop_size", 1, "train.crop_size = 1 is invalid: a crop is 0 (off) or 32 to 48 pixels"),
        ("data", "source", "data/nowhere", "data.source = 'data/nowhere' does not exist"),
    ],
)
def test_a_bad_param_stops_the_pipeline_before_any_output_is_removed(workspace, section, key, value, message) -> None:
    before = outputs_snapshot(workspace)
    set_param(workspace, section, key, value)
    output = run([sys.executable, "-m", "dvc", "repro"], workspace, check=False)
    assert message in output
    assert "Traceback" not in output
    assert stages_run(output) == {"check"}  # nothing after it ran, so nothing of theirs was removed
    after = outputs_snapshot(workspace)
    assert {k: v for k, v in after.items() if not k.startswith("params/checked/")} == {
        k: v for k, v in before.items() if not k.startswith("params/checked/")
    }
    # Recovery, as the README says: restore params.yaml, then dvc repro (only check reruns).
    run(["git", "checkout", "--", "params.yaml"], workspace)
    assert stages_run(dvc("repro", cwd=workspace)) == {"check"}
    assert outputs_snapshot(workspace) == before


@FIRST_HALF
@pytest.mark.parametrize(
    "section, key, value",
    [
        ("evaluate", "tta", "flip; touch {marker} #"),
        ("data", "classes", ["$(touch {marker})angry", "sad"]),
        ("train", "optimizer", "adam`touch {marker}`"),
    ],
)
def test_a_hostile_param_value_is_refused_and_runs_nothing(workspace, tmp_path, section, key, value) -> None:
    marker = tmp_path / "pwned"
    value = [v.format(marker=marker) for v in value] if isinstance(value, list) else value.format(marker=marker)
    set_param(workspace, section, key, value)
    output = run([sys.executable, "-m", "dvc", "repro"], workspace, check=False)
    assert f"{section}.{key}" in output and "is invalid" in output
    assert not marker.exists()


@FIRST_HALF
def test_a_queued_two_point_sweep_shows_both_experiments_with_metrics(workspace: Path) -> None:
    project = workspace
    dvc("exp", "run", "--queue", "-S", "train.learning_rate=0.002,0.003", cwd=project)
    dvc("queue", "start", "-j", "1", cwd=project)
    deadline = time.monotonic() + 900
    while True:
        status = dvc("queue", "status", cwd=project)
        if not re.search(r"\b(Queued|Running)\b", status):
            break
        assert time.monotonic() < deadline, status
        time.sleep(5)
    assert status.count("Success") == 2, status
    table = json.loads(dvc("exp", "show", "--json", cwd=project))
    rates, accuracies = set(), []
    for commit_entry in table:
        for experiment in commit_entry.get("experiments") or []:
            for revision in experiment["revs"]:
                data = revision["data"]
                rates.add(data["params"]["params.yaml"]["data"]["train"]["learning_rate"])
                accuracies.append(data["metrics"]["metrics/evaluate.json"]["data"]["acc_test"])
    assert {0.002, 0.003} <= rates
    assert len(accuracies) >= 2 and all(0.0 <= a <= 1.0 for a in accuracies)


@FIRST_HALF
def test_push_then_pull_into_a_fresh_clone_restores_outputs_without_rerunning(workspace: Path, tmp_path) -> None:
    project = workspace
    remote = tmp_path / "remote"
    dvc("remote", "add", "--local", "-f", "-d", "scratch", str(remote), cwd=project)
    dvc("push", cwd=project)
    clone = tmp_path / "second_clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    dvc("remote", "add", "--local", "-f", "-d", "scratch", str(remote), cwd=clone)
    dvc("pull", cwd=clone)
    assert (clone / "models/model.keras").read_bytes() == (project / "models/model.keras").read_bytes()
    assert (clone / "reports/03_train.html").exists()
    assert stages_run(dvc("repro", cwd=clone)) == set()


@SECOND_HALF
def test_a_killed_train_stage_resumes_from_its_last_epoch_on_the_next_repro(workspace: Path) -> None:
    project = workspace
    for key, value in {"epochs": 30, "early_stopping_patience": 30}.items():
        set_param(project, "train", key, value)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    process = subprocess.Popen(
        [sys.executable, "-m", "dvc", "repro"],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    state = project / "models" / "checkpoints" / "state.json"
    try:
        # The epoch lines are the events to wait for: once epoch 3's line is printed, epoch 2's
        # state is saved (the earlier runs left a finished state behind, so the file alone says little).
        assert wait_for_line(process, "epoch 3/30", seconds=600), "the stage ended before it could be killed"
        os.kill(process.pid, 9)  # dvc alone: its stage runner and the kernel must notice and stop
        process.wait(timeout=60)
        assert processes_in(project, within_seconds=10) == [], "the stage outlived the killed dvc"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
        for leftover in processes_in(project, within_seconds=0):
            leftover.kill()
    killed = json.loads(state.read_text())
    killed_at = killed["epochs_done"]
    assert 2 <= killed_at < 30 and not killed["complete"]
    output = dvc("repro", cwd=project)
    assert "train" in stages_run(output)
    assert f"resumed after epoch {killed_at}" in (project / "reports/03_train.ipynb").read_text()
    assert f"epoch {killed_at + 1}/30" in output  # progress lines reach the terminal
    logged = (project / "plots/training/plots/metrics/val/accuracy.tsv").read_text().splitlines()
    assert len(logged) == 1 + 30  # the curves keep the epochs before the kill
    assert json.loads((project / "results/train.json").read_text())["epochs_run"] == 30
