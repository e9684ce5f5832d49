"""`fer predict --engine ray`: the local engine's records from Ray Data actors, on a local Ray
started on 127.0.0.1 with 2 CPUs (one per test module), and on a head started with `ray start`.

`pytest -m "not ray"` leaves these out; CI runs them.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from conftest import SAMPLE, build_hostile_images, two_face_canvas, write_two_face_clip

from ferflow import CLASS_NAMES
from ferflow.apps.cli import EXIT_NOTHING, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main

pytestmark = [pytest.mark.ray, pytest.mark.xdist_group("ray")]  # one local Ray, in one worker

FACE_COUNT = 300  # a few hundred real faces: several batches for each of the two actors


# Ray's token authentication with a token of the tests' own, so that nothing is read from or
# written to ~/.ray, and a driver in another process is let in.
RAY_AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": uuid.uuid4().hex + uuid.uuid4().hex}


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray for this module: 2 CPUs, every server on 127.0.0.1, no usage report. Ray (the
    [ray] extra, in requirements.txt) is imported here, after `connect` has set what it reads."""
    from ferflow.faces.ray_engine import connect

    os.environ.update(RAY_AUTH)
    connect(None, cpus=2)
    import ray

    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """FACE_COUNT real faces from the sample, in class folders (43 of each class, less one)."""
    folder = tmp_path_factory.mktemp("crops")
    files = [path for name in CLASS_NAMES for path in sorted((SAMPLE / "train" / name).glob("*.jpg"))[:43]]
    files = files[:FACE_COUNT]
    assert len(files) == FACE_COUNT
    for path in files:
        (folder / path.parent.name).mkdir(exist_ok=True)
        shutil.copy(path, folder / path.parent.name / path.name)
    return folder


def records(tmp_path: Path, *arguments: str) -> tuple[int, dict]:
    """The exit code and JSON document of `fer predict ARGUMENTS --json FILE`."""
    out = tmp_path / f"out{len(list(tmp_path.glob('out*.json')))}.json"
    code = main(["predict", *arguments, "--json", str(out)])
    return code, json.loads(out.read_text()) if out.exists() else {}


def assert_same_records(ray_document: dict, local_document: dict) -> None:
    """The same faces in the same order: files, frames, boxes and labels equal, probabilities
    equal to float tolerance (ONNX Runtime's sums may differ in the last bits with the batch)."""
    ray_faces, local_faces = ray_document.pop("faces"), local_document.pop("faces")
    assert ray_document == local_document  # class names, detector, model
    assert len(ray_faces) == len(local_faces) > 0
    for mine, theirs in zip(ray_faces, local_faces):
        probabilities, expected = mine.pop("probabilities"), theirs.pop("probabilities")
        np.testing.assert_allclose(mine.pop("confidence"), theirs.pop("confidence"), atol=1e-6)
        np.testing.assert_allclose(list(probabilities.values()), list(expected.values()), atol=1e-6)
        assert mine == theirs


def test_face_crops_give_the_local_records(local_ray, crops, tmp_path, capsys) -> None:
    local_code, local = records(tmp_path, str(crops), "--no-detect")
    ray_code, scored = records(tmp_path, str(crops), "--no-detect", "--engine", "ray", "--ray-workers", "2")
    assert local_code == ray_code == EXIT_OK
    assert len(scored["faces"]) == FACE_COUNT
    assert_same_records(scored, local)
    assert f"{FACE_COUNT} face(s) in {FACE_COUNT} file(s); 0 problem(s)" in capsys.readouterr().err


def test_photos_with_detection_and_bad_files_give_the_local_records_and_problems(local_ray, tmp_path, capsys) -> None:
    """Photos with faces found by MTCNN, with hostile files (bombs, truncated, text named .jpg)
    and a missing path among them: the same faces and the same problems, one line each."""
    import cv2

    photos = tmp_path / "photos"
    build_hostile_images(photos / "bad")
    cv2.imwrite(str(photos / "a_two_faces.png"), two_face_canvas())
    shutil.copy(SAMPLE.parent.parent / "tests" / "data" / "astronaut.jpg", photos / "m_astronaut.jpg")
    cv2.imwrite(str(photos / "z_two_faces.jpg"), two_face_canvas())
    arguments = [str(photos), str(tmp_path / "missing.jpg")]

    local_code, local = records(tmp_path, *arguments)
    local_problems = capsys.readouterr().err
    ray_code, scored = records(tmp_path, *arguments, "--engine", "ray")
    ray_problems = capsys.readouterr().err
    assert local_code == ray_code == EXIT_PARTIAL
    assert_same_records(scored, local)
    problem_lines = [line for line in local_problems.splitlines() if line.split(":")[0] in PROBLEM_KINDS]
    assert len(problem_lines) >= 8  # the missing path, bombs, truncated and text files, no face
    assert problem_lines == [line for line in ray_problems.splitlines() if line.split(":")[0] in PROBLEM_KINDS]


PROBLEM_KINDS = ("missing", "unreadable", "no_face")


def test_a_video_gives_the_local_tracks_and_smoothed_labels(local_ray, tmp_path) -> None:
    """A video is one actor's task, so its faces are tracked and smoothed as by the local engine."""
    clip = write_two_face_clip(tmp_path / "clip.avi", seconds=2)
    local_code, local = records(tmp_path, str(clip), "--video-stride", "2")
    ray_code, scored = records(tmp_path, str(clip), "--video-stride", "2", "--engine", "ray")
    assert local_code == ray_code == EXIT_OK
    assert {face["track"] for face in scored["faces"]} == {1, 2}
    for mine, theirs in zip(scored["faces"], local["faces"]):
        np.testing.assert_allclose(
            list(mine.pop("probabilities_smoothed").values()),
            list(theirs.pop("probabilities_smoothed").values()),
            atol=1e-6,
        )
    assert_same_records(scored, local)


def test_a_corrupt_file_in_the_middle_costs_only_that_file(local_ray, crops, tmp_path, capsys) -> None:
    folder = tmp_path / "crops"
    shutil.copytree(crops / "happy", folder)
    names = sorted(p.name for p in folder.iterdir())
    corrupt = folder / names[len(names) // 2]
    corrupt.write_bytes(corrupt.read_bytes()[:100])  # a truncated JPEG
    code, scored = records(tmp_path, str(folder), "--no-detect", "--engine", "ray")
    assert code == EXIT_PARTIAL
    assert [Path(face["file"]).name for face in scored["faces"]] == [n for n in names if n != corrupt.name]
    errors = capsys.readouterr().err
    assert f"unreadable: '{corrupt}'" in errors or f"unreadable: {corrupt}" in errors or str(corrupt) in errors
    assert f"{len(names) - 1} face(s) in {len(names)} file(s); 1 problem(s)" in errors


def test_parquet_holds_the_csv_rows_and_a_rerun_replaces_it(local_ray, crops, tmp_path) -> None:
    import pandas as pd

    folder = tmp_path / "crops"
    shutil.copytree(crops / "sad", folder)
    shutil.copytree(crops / "surprise", folder / "surprise")
    parquet, csv = tmp_path / "faces.parquet.d", tmp_path / "faces.csv"
    arguments = ["predict", str(folder), "--no-detect", "--engine", "ray", "--parquet", str(parquet)]
    assert main([*arguments, "--csv", str(csv)]) == EXIT_OK
    table = pd.read_parquet(parquet)
    expected = pd.read_csv(csv)
    assert list(table.columns) == list(expected.columns)
    assert len(table) == len(expected) == len(list(folder.rglob("*.jpg")))
    assert table["file"].tolist() == expected["file"].tolist()
    assert table["frame"].isna().all()  # photos have no frame, as the CSV's empty cells
    assert table["emotion"].tolist() == expected["emotion"].tolist()
    np.testing.assert_allclose(table["confidence"], expected["confidence"], atol=1e-9)

    first_files = sorted(p.name for p in parquet.iterdir())
    shutil.rmtree(folder / "surprise")
    assert main(arguments) == EXIT_OK  # the previous run's Parquet folder is replaced whole
    assert len(pd.read_parquet(parquet)) == len(list(folder.rglob("*.jpg")))
    assert sorted(p.name for p in parquet.iterdir()) != first_files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging or old folder left


def test_a_run_with_no_face_writes_an_empty_parquet_folder(local_ray, tmp_path) -> None:
    import cv2

    blank = tmp_path / "blank"
    blank.mkdir()
    cv2.imwrite(str(blank / "grey.png"), np.full((200, 200), 128, np.uint8))
    parquet = tmp_path / "out"
    assert main(["predict", str(blank), "--engine", "ray", "--parquet", str(parquet)]) == EXIT_NOTHING
    assert parquet.is_dir() and not any(parquet.glob("*.parquet"))


def test_local_ray_servers_listen_on_loopback_only(local_ray) -> None:
    """Every socket that the local Ray's processes listen on is on 127.0.0.1 (or ::1)."""
    import psutil

    ray_processes = {child.pid for child in psutil.Process().children(recursive=True)}
    assert ray_processes, "the local Ray started no process of its own"
    listening = [
        connection.laddr
        for connection in psutil.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.pid in ray_processes
    ]
    assert listening, "no Ray server was found listening"
    outside = [address for address in listening if address.ip not in ("127.0.0.1", "::1", "::ffff:127.0.0.1")]
    assert outside == []
    assert {node["NodeManagerAddress"] for node in local_ray.nodes()} == {"127.0.0.1"}


def test_fer_predict_joins_a_head_started_with_ray_start(crops, tmp_path) -> None:
    """`ray start --head` on 127.0.0.1, then `fer predict --ray-address` in its own process: the
    local engine's records, and the head's job table lists the driver."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, **RAY_AUTH, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_command = str(Path(sys.executable).parent / "ray")
    start = [ray_command, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port), "--block"]
    # --block: the head lives as long as this process group, which the test stops, leaving alone
    # any other Ray on the machine (`ray stop` would stop them all, this test's own driver included).
    head = subprocess.Popen(
        [*start, "--num-cpus", "2", "--include-dashboard", "false", "--disable-usage-stats"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for_port(port, head)
        folder = tmp_path / "crops"
        shutil.copytree(crops / "fear", folder)
        out = tmp_path / "ray.json"
        predict = [sys.executable, "-m", "ferflow.apps.cli", "predict", str(folder), "--no-detect", "--engine", "ray"]
        finished = subprocess.run(
            [*predict, "--ray-address", f"127.0.0.1:{port}", "--json", str(out)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert finished.returncode == EXIT_OK, finished.stderr
        local_code, local = records(tmp_path, str(folder), "--no-detect")
        assert local_code == EXIT_OK
        assert_same_records(json.loads(out.read_text()), local)
        jobs = subprocess.run(
            [sys.executable, "-c", JOB_TABLE, f"127.0.0.1:{port}"], env=env, capture_output=True, text=True, timeout=120
        )
        assert "ferflow.apps.cli predict" in jobs.stdout, jobs.stderr
    finally:
        stop_group(head)


def wait_for_port(port: int, process: subprocess.Popen, timeout_s: float = 60.0) -> None:
    """Until something listens on 127.0.0.1:`port`, at most `timeout_s` (polled every 0.2 s)."""
    import socket
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, "the Ray head stopped while starting"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"the Ray head did not listen on port {port} within {timeout_s:g} s")


def stop_group(process: subprocess.Popen) -> None:
    """SIGTERM to the process group, then SIGKILL after 30 s."""
    import signal

    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


# The drivers in the cluster's job table (the GCS's, which needs no dashboard), one per line.
JOB_TABLE = """
import sys, ray
ray.init(address=sys.argv[1], logging_level="error")
for job in ray._private.state.state.job_table():
    print(job.get("Entrypoint", ""), job.get("IsDead"))
"""


def test_without_ray_the_engine_says_what_to_install(monkeypatch, tmp_path, capsys) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    assert main(["predict", str(tmp_path), "--engine", "ray"]) == EXIT_USAGE
    assert capsys.readouterr().err.strip() == "error: --engine ray needs Ray Data: pip install 'ferflow[ray]'"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--ray-address", "127.0.0.1:1"], "--ray-address needs --engine ray"),
        (["--parquet", "out"], "--parquet needs --engine ray"),
        (["--engine", "ray", "--ray-address", "a b"], "'a b' is not HOST:PORT"),
        (["--engine", "ray", "--ray-address", "127.0.0.1:70000"], "the port must be 1..65535"),
        (["--engine", "ray", "--ray-workers", "0"], "--ray-workers must be 1 or more"),
        (["--engine", "ray", "--annotate", "copies"], "--annotate is not available with --engine ray"),
        (["--engine", "ray", "--ray-address", "127.0.0.1:1"], "nothing answers at 127.0.0.1:1"),
    ],
)
def test_bad_ray_options_are_one_line_before_any_work(arguments, message, crops, tmp_path, capsys) -> None:
    assert main(["predict", str(crops), "--no-detect", *arguments]) == EXIT_USAGE
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: ") and message in errors[0], errors


def test_a_parquet_folder_holding_other_files_is_refused(crops, tmp_path, capsys) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    assert main(["predict", str(crops), "--no-detect", "--engine", "ray", "--parquet", str(folder)]) == EXIT_USAGE
    assert "'notes.txt'" in capsys.readouterr().err
    assert (folder / "notes.txt").read_text() == "mine"
