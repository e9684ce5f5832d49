"""The baseline comparison, and the stage runner's check and error messages."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO

from ferflow.pipeline.baseline import COMPARED, differences, lookup
from ferflow.pipeline.stage import short_reason


def metrics(accuracy: float) -> dict[str, dict]:
    return {
        "metrics/evaluate.json": {
            "acc_test": accuracy,
            "acc_tta": accuracy,
            "macro_f1": 0.4,
            "ece": 0.05,
            "acc_val": accuracy,
        },
        "metrics/robustness.json": {"acc_noise": accuracy, "acc_corruptions": 0.4},
    }


def test_the_committed_metrics_have_every_compared_key_as_a_fraction() -> None:
    for path, keys in COMPARED.items():
        committed = json.loads((REPO / path).read_text())
        for key in keys:
            assert 0.0 < lookup(committed, key) < 1.0, f"{path}: {key}"


def test_the_committed_lock_records_the_committed_code() -> None:
    # The committed metrics are only the baseline of this code if dvc.lock was written by it:
    # every source file and notebook a stage depends on must have the md5 the lock records.
    lock = yaml.safe_load((REPO / "dvc.lock").read_text())
    stale = [
        f"{name}: {dep['path']}"
        for name, stage in lock["stages"].items()
        for dep in stage.get("deps", [])
        if dep["path"].startswith(("src/", "notebooks/"))
        and hashlib.md5((REPO / dep["path"]).read_bytes()).hexdigest() != dep["md5"]
    ]
    assert stale == [], "dvc.lock is stale; run `dvc repro` and commit dvc.lock with its outputs"


def test_metrics_within_the_tolerance_reproduce_and_others_are_named() -> None:
    assert differences(metrics(0.50), metrics(0.52), 0.03) == []
    problems = differences(metrics(0.50), metrics(0.55), 0.03)
    assert len(problems) == 4  # the four accuracies moved; macro F1 and corruption accuracy did not
    assert problems[0] == "metrics/evaluate.json: acc_test = 0.5000, committed 0.5500 (differs by 0.0500 > 0.03)"


def test_macro_f1_is_allowed_twice_the_tolerance_and_no_more() -> None:
    def with_macro_f1(value: float) -> dict[str, dict]:
        data = metrics(0.5)
        data["metrics/evaluate.json"]["macro_f1"] = value
        return data

    assert differences(with_macro_f1(0.458), with_macro_f1(0.420), 0.03) == []  # 0.038: two CPUs, measured
    assert differences(with_macro_f1(0.49), with_macro_f1(0.42), 0.03) == [
        "metrics/evaluate.json: macro_f1 = 0.4900, committed 0.4200 (differs by 0.0700 > 0.06)"
    ]


def run_check(tmp_path: Path, params: dict) -> subprocess.CompletedProcess:
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return subprocess.run(
        [sys.executable, "-m", "ferflow.pipeline.stage", "check"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO / "src")},
    )


def test_check_writes_one_json_per_section(tmp_path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = str(REPO / "data" / "sample")  # check refuses a source that is not there
    result = run_check(tmp_path, params)
    assert result.returncode == 0, result.stderr
    for section, values in params.items():
        assert json.loads((tmp_path / "params" / "checked" / f"{section}.json").read_text()) == values


def test_check_names_an_empty_dvc_lock_and_how_to_restore_it(tmp_path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = str(REPO / "data" / "sample")
    (tmp_path / "dvc.lock").write_text("")  # what a dvc repro killed while writing it left
    result = run_check(tmp_path, params)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: dvc.lock is empty or damaged (a killed `dvc repro` can leave it so): restore it with "
        "`git checkout dvc.lock`, or delete it to rerun every stage"
    )
    (tmp_path / "dvc.lock").write_text((REPO / "dvc.lock").read_text())
    assert run_check(tmp_path, params).returncode == 0


def test_a_stage_removes_what_a_killed_writer_left_half_written(tmp_path, monkeypatch) -> None:
    from ferflow.io import atomic_path
    from ferflow.pipeline import stage

    monkeypatch.chdir(tmp_path)
    target = tmp_path / "plots" / "confusion_matrix_normalised.png"
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target, suffix=".png") as tmp:
            left = tmp.with_name(tmp.name + ".copy")  # atomic_path removes its own on an exception;
            tmp.write_bytes(b"half")  # a SIGKILL does not: keep one as a kill would
            left.write_bytes(b"half")
            raise KeyboardInterrupt
    (tmp_path / "plots" / ".gitignore").write_text("keep me")  # not ours: untouched
    monkeypatch.setattr(stage, "stage_parameters", lambda name: (_ for _ in ()).throw(SystemExit(0)))
    with pytest.raises(SystemExit):
        stage.run("evaluate")  # stops before the notebook, after the clean-up
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [".gitignore"]


def test_check_refuses_a_bad_file_in_one_short_line_and_writes_nothing(tmp_path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["train"]["optimizer"] = "adam w"
    result = run_check(tmp_path, params)
    assert result.returncode == 2
    assert result.stderr.startswith("error: params (params.yaml): train.optimizer = 'adam w' is invalid")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "params").exists()


def test_a_failed_cell_is_reported_by_its_reason_first() -> None:
    class CellFailed(Exception):  # the shape of papermill's PapermillExecutionError
        ename, evalue = "DataError", "data.source: path 'nope' does not exist. Set data.source ...\nmore"

    args = type("Args", (), {"stage": "preprocess"})()
    reason = short_reason(CellFailed(), args)
    assert reason.startswith("DataError: data.source: path 'nope' does not exist.")
    assert "\n" not in reason and "reports/02_preprocess.ipynb" in reason


def test_our_package_and_the_pypi_fer_package_import_side_by_side() -> None:
    code = (
        "import fer, ferflow, ferflow.faces.predict; "
        "print(fer.__title__, fer.__version__, ferflow.__name__, fer.__file__ != ferflow.__file__)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, (
        "the PyPI fer package is missing: pip install --no-deps fer==25.10.3 "
        f"(README, Development)\n{result.stderr[-2000:]}"
    )
    assert result.stdout.split() == ["fer", "25.10.3", "ferflow", "True"]
    help_text = subprocess.run(
        [sys.executable, "-m", "ferflow.apps.cli", "--help"], capture_output=True, text=True
    ).stdout
    assert (
        help_text
        == subprocess.run([str(Path(sys.executable).parent / "fer"), "--help"], capture_output=True, text=True).stdout
    )
    assert "Facial-emotion recognition on FER-2013" in help_text  # the `fer` command is still ours


def test_check_refuses_a_missing_data_source_in_one_line_naming_the_key(tmp_path) -> None:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["source"] = "data/nowhere"
    result = run_check(tmp_path, params)
    assert result.returncode == 2
    assert result.stderr.startswith("error: data.source = 'data/nowhere' does not exist")
    assert len(result.stderr.strip().splitlines()) == 1


ALIVE = ("running", "sleeping", "disk-sleep")


@pytest.mark.parametrize("through", ["exec", "waiting shell"])
def test_a_stage_and_its_kernel_stop_when_the_process_that_started_them_is_killed(tmp_path, through) -> None:
    import psutil

    pids = tmp_path / "pids"
    stage = (
        f"import subprocess, time; from ferflow.pipeline.stage import stop_with_parent; stop_with_parent(0.2); "
        f"kernel = subprocess.Popen(['sleep', '120'], start_new_session=True); "  # as Jupyter starts it
        f"open({str(pids)!r}, 'w').write(f'{{__import__(\"os\").getpid()}} {{kernel.pid}}'); time.sleep(120)"
    )
    command = [sys.executable, "-c", stage]
    if through == "waiting shell":  # `; exit $?` keeps the shell from exec-ing the command: it waits, as dvc's can
        command = ["sh", "-c", f"{shlex.join(command)}; exit $?"]
    dvc_stand_in = f"import subprocess, sys, time; subprocess.Popen({command!r}); time.sleep(120)"
    parent = subprocess.Popen([sys.executable, "-c", dvc_stand_in], env={**os.environ, "PYTHONPATH": str(REPO / "src")})
    try:
        deadline = time.monotonic() + 30
        while not (pids.exists() and len(pids.read_text().split()) == 2) and time.monotonic() < deadline:
            time.sleep(0.1)
        stage_pid, kernel_pid = map(int, pids.read_text().split())
        assert all(psutil.Process(pid).status() in ALIVE for pid in (stage_pid, kernel_pid))
        watched = [psutil.Process(stage_pid), psutil.Process(kernel_pid)]
        parent.kill()  # kill -9 the "dvc"
        parent.wait()
        _, alive = psutil.wait_procs(watched, timeout=60)  # returns as soon as both are gone
        assert not alive and not running(stage_pid) and not running(kernel_pid), "the stage or its kernel outlived dvc"
    finally:
        parent.kill()


def running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() in ALIVE
    except psutil.NoSuchProcess:
        return False


def test_sigterm_or_ctrl_c_stops_a_stage_in_one_line() -> None:
    code = (
        "import sys, time; from ferflow.pipeline import stage; "
        "stage._main = lambda argv: (print('ready', flush=True), time.sleep(60)); "
        "sys.exit(stage.main(['run', 'train']))"
    )
    for signum, exit_code, word in ((signal.SIGTERM, 143, "stopped"), (signal.SIGINT, 130, "interrupted")):
        process = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO / "src")},
        )
        assert process.stdout.readline().strip() == "ready"
        process.send_signal(signum)
        _, err = process.communicate(timeout=30)
        assert process.returncode == exit_code
        assert err.strip() == (
            f"{word}: the train stage did not finish; run `dvc repro` again to complete it "
            "(a training carries on from its last finished epoch)"
        )


def test_a_stage_report_has_a_title_a_way_back_and_no_code() -> None:
    import nbformat

    from ferflow.pipeline.stage import report_html

    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_markdown_cell("# 4 · Evaluate on the test split\n\nWhat it does."),
            nbformat.v4.new_code_cell(
                "secret_code_line = 41 + 1\nprint(secret_code_line)",
                outputs=[nbformat.v4.new_output("stream", name="stdout", text="accuracy 0.4943\n")],
            ),
        ]
    )
    page = report_html(notebook, "04_evaluate.ipynb")
    assert "<title>4 · Evaluate on the test split · ferflow</title>" in page
    assert 'href="index.html"' in page and 'href="04_evaluate.ipynb"' in page
    assert "accuracy 0.4943" in page and "secret_code_line" not in page
    assert not re.findall(r"""<script[^>]+src=["']https?://""", page)  # nothing fetched: reports work offline
    assert 'href="04_evaluate.code.html"' in page  # the code is a rendered page too, not raw JSON
    with_code = report_html(notebook, "04_evaluate.ipynb", with_code=True)
    assert "secret_code_line" in with_code and "accuracy 0.4943" in with_code
    assert 'href="04_evaluate.html"' in with_code and 'href="index.html"' in with_code


def test_the_baseline_command_passes_on_the_committed_metrics_and_names_a_drift(tmp_path, monkeypatch, capsys) -> None:
    from ferflow.pipeline.baseline import main

    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    (tmp_path / "metrics").mkdir()
    for path, values in metrics(0.5).items():
        (tmp_path / path).write_text(json.dumps(values))
    subprocess.run([*git, "add", "-A"], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "baseline"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    assert main(["--tolerance", "0.03"]) == 0
    assert capsys.readouterr().out.strip() == (
        "baseline reproduced: 6 metrics within 0.03 of HEAD (macro_f1 within 0.06)"
    )
    (tmp_path / "metrics/evaluate.json").write_text(json.dumps(metrics(0.6)["metrics/evaluate.json"]))
    assert main(["--tolerance", "0.03"]) == 1
    assert "not reproduced: metrics/evaluate.json: acc_test = 0.6000, committed 0.5000" in capsys.readouterr().err
