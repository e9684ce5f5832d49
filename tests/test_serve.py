"""`fer serve`: the API answers like `fer predict --json`, refuses bad input with 4xx JSON,
keeps serving after each, writes nothing to disk, and its page loads nothing from outside."""

from __future__ import annotations

import json
import os
import re

import cv2
import pytest
from fastapi.testclient import TestClient
from skimage import data as skimage_data

from ferflow.apps.cli import main
from ferflow.apps.serve import create_app
from ferflow.faces.predict import DEFAULT_MODEL, load_classifier

LOCAL = "http://127.0.0.1:8000"  # the Host header a browser on this machine sends


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def client(classifier, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serve_cwd")
    before = os.getcwd()
    os.chdir(workdir)  # anything written relative to the working folder would land here
    try:
        yield TestClient(create_app(classifier, max_upload_bytes=2_000_000), base_url=LOCAL)
    finally:
        os.chdir(before)
        assert list(workdir.iterdir()) == [], "the server wrote files"


def portrait_png() -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


def still_serving(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_health_model_and_page(client, classifier) -> None:
    still_serving(client)
    model = client.get("/model").json()
    assert model["class_names"] == list(classifier.class_names)
    assert model["input"]["shape"] == [48, 48, 1]
    assert "accuracy" in model["test_metrics"]
    page = client.get("/").text
    assert "<canvas" in page and "/predict" in page
    # No CDN: every src/href is local.
    assert not re.findall(r"""(?:src|href)=["']https?://""", page)
    assert "/predict" in client.get("/openapi.json").json()["paths"]
    assert "curl -F file=@photo.jpg" in client.get("/api").text


def test_predict_answers_with_the_schema_of_fer_predict_json(client, tmp_path) -> None:
    data = portrait_png()
    response = client.post("/predict", files={"file": ("astronaut.png", data, "image/png")})
    assert response.status_code == 200, response.text
    served = response.json()
    assert len(served["faces"]) == 1 and served["image"] == {"width": 512, "height": 512}
    photo = tmp_path / "astronaut.png"
    photo.write_bytes(data)
    out = tmp_path / "cli.json"
    assert main(["predict", str(photo), "--json", str(out)]) == 0
    from_cli = json.loads(out.read_text())
    assert served["class_names"] == from_cli["class_names"]
    served_face, cli_face = served["faces"][0], from_cli["faces"][0]
    assert set(served_face) == set(cli_face)
    assert served_face["emotion"] == cli_face["emotion"]
    assert [served_face[k] for k in ("x", "y", "width", "height")] == [
        cli_face[k] for k in ("x", "y", "width", "height")
    ]
    assert served_face["probabilities"] == pytest.approx(cli_face["probabilities"], abs=1e-5)


def truncated_jpeg() -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()[: len(encoded) * 2 // 3]  # OpenCV alone would decode the top two thirds


def photo_without_a_face() -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2BGR))  # a cup of coffee
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize(
    "name, payload, status, message",
    [
        ("notes.txt", b"just some text, not an image", 400, "is not a readable image"),
        ("half.jpg", truncated_jpeg(), 400, "is not a readable image"),
        ("empty.jpg", b"", 400, "is empty"),
        ("coffee.jpg", photo_without_a_face(), 422, "no face found in 'coffee.jpg'"),
        ("huge.png", b"\x89PNG" + b"0" * 2_100_000, 413, "over the"),
    ],
)
def test_bad_uploads_get_a_clear_4xx_json_error_and_the_server_keeps_serving(
    client, name, payload, status, message
) -> None:
    response = client.post("/predict", files={"file": (name, payload, "application/octet-stream")})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    still_serving(client)


def test_a_request_without_a_file_is_refused(client) -> None:
    response = client.post("/predict", content=b"", headers={"content-type": "application/octet-stream"})
    assert response.status_code == 400
    assert "send the photo as multipart form field 'file'" in response.json()["error"]
    still_serving(client)


def test_hostile_images_get_a_4xx_json_error_or_faces_never_a_500(client, hostile_images) -> None:
    for name, path in hostile_images.items():
        response = client.post("/predict", files={"file": (name, path.read_bytes(), "application/octet-stream")})
        assert response.status_code in {200, 400, 422}, (name, response.status_code, response.text)
        body = response.json()
        assert ("faces" in body) if response.status_code == 200 else (set(body) == {"error"} and name in body["error"])
    still_serving(client)


@pytest.mark.parametrize(
    "request_kwargs, status, message",
    [
        (
            {"data": {"file": "a text field, not a file"}, "files": {"other": ("o.txt", b"o")}},
            400,
            "is not a readable image",
        ),
        (
            {"data": {f"field{i}": "x" for i in range(20)}, "files": {"file": ("f.jpg", b"f")}},
            400,
            "too many form fields",
        ),
        ({"data": {"file": "url-encoded"}}, 400, "send the photo as multipart form field 'file'"),
        (
            {"content": b"--abc\r\nbroken", "headers": {"content-type": "multipart/form-data; boundary=abc"}},
            400,
            "send the photo as multipart form field 'file'",
        ),
    ],
)
def test_odd_forms_get_the_same_error_shape(client, request_kwargs, status, message) -> None:
    response = client.post("/predict", **request_kwargs)
    assert response.status_code == status and message in response.json()["error"], response.text


def test_framework_errors_have_the_same_shape(client) -> None:
    assert client.get("/no/such/page").json() == {"error": "Not Found"}
    assert client.get("/predict").json() == {"error": "Method Not Allowed"}


def test_an_oversized_upload_is_refused_before_the_body_is_read(classifier) -> None:
    import asyncio

    from ferflow.apps.serve import UploadError, read_upload

    sent = []

    async def receive():
        sent.append(1)
        return {"type": "http.request", "body": b"x" * 100_000, "more_body": len(sent) < 5_000}  # 500 MB offered

    def upload(headers: list[tuple[bytes, bytes]]):
        from starlette.requests import Request

        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": headers}
        return asyncio.run(read_upload(Request(scope, receive), max_bytes=1_000_000))

    form = [(b"content-type", b"multipart/form-data; boundary=abc")]
    with pytest.raises(UploadError, match="over the limit") as declared:
        upload(form + [(b"content-length", b"500000000")])
    assert declared.value.status == 413 and sent == []  # refused on the header alone
    with pytest.raises(UploadError, match="over the limit") as streamed:
        upload(form)  # chunked: no length declared
    assert streamed.value.status == 413 and len(sent) == 11  # stopped at 1.1 MB of the 500


def test_a_port_in_use_is_said_before_the_banner(tmp_path, capsys) -> None:
    import socket

    from ferflow.faces.predict import DEFAULT_MODEL

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    port = holder.getsockname()[1]
    try:
        assert main(["serve", "--model", str(DEFAULT_MODEL), "--port", str(port)]) == 2
    finally:
        holder.close()
    captured = capsys.readouterr()
    assert "serving" not in captured.out
    assert (
        captured.err.strip()
        == f"error: port {port} on 127.0.0.1 is in use by another program; choose another with --port"
    )


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-3"])
def test_unusable_upload_limits_are_refused(value, capsys) -> None:
    assert main(["serve", "--max-upload-mb", value]) == 2
    assert capsys.readouterr().err.startswith("error: --max-upload-mb must be above 0")


def test_an_upload_is_never_written_to_disk(classifier, monkeypatch) -> None:
    import tempfile

    def refuse(*args, **kwargs):
        raise AssertionError("an upload went to a temporary file")

    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, refuse)
    client = TestClient(create_app(classifier, max_upload_bytes=8_000_000), base_url=LOCAL)
    padded = portrait_png() + b"\0" * 3_000_000  # over the 1 MB at which Starlette would spool to disk
    response = client.post("/predict", files={"file": ("astronaut.png", padded, "image/png")})
    assert response.status_code == 200 and len(response.json()["faces"]) == 1


def test_the_model_card_is_read_once_with_the_model(tmp_path) -> None:
    import shutil

    for suffix in (".onnx", ".json"):
        shutil.copy(DEFAULT_MODEL.with_suffix(suffix), tmp_path / f"m{suffix}")
    served = load_classifier(tmp_path / "m.onnx")
    (tmp_path / "m.json").unlink()  # /model must answer from what was loaded, not read the file again
    model = TestClient(create_app(served), base_url=LOCAL).get("/model").json()
    assert model["test_metrics"]["accuracy"] == served.sidecar["test_metrics"]["accuracy"]
    assert model["arch"] == served.sidecar["arch"] and model["path"] == "m.onnx"


# ----------------------------------------------------------------------------- bounds and hosts


def test_only_this_machines_host_names_are_answered(classifier) -> None:
    app = create_app(classifier, allowed_hosts=("fer.lab.example",))
    for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "FER.lab.example:8000"):
        assert TestClient(app, base_url=f"http://{host}").get("/health").status_code == 200, host
    rebound = TestClient(app, base_url="http://attacker.example").get("/model")
    assert rebound.status_code == 421 and "not 'attacker.example'" in rebound.json()["error"]


def test_the_page_runs_only_its_own_script_and_sets_class_names_as_text(client) -> None:
    import base64
    import hashlib

    response = client.get("/")
    policy = response.headers["content-security-policy"]
    script = re.search(r"<script>(.*?)</script>", response.text, flags=re.S).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}';" in policy and "default-src 'none'" in policy
    assert "unsafe-inline" not in policy and "innerHTML" not in response.text
    assert client.get("/health").headers["x-content-type-options"] == "nosniff"


def test_decoding_waits_for_memory_instead_of_running_all_at_once(classifier, monkeypatch) -> None:
    import threading

    import ferflow.apps.serve as serve

    running, peak, lock = [0], [0], threading.Lock()
    real = serve.decode_image

    def counted(data, name):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            threading.Event().wait(0.2)  # long enough for the others to arrive
            return real(data, name)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(serve, "decode_image", counted)
    monkeypatch.setattr(serve, "DECODE_BUDGET_BYTES", 512 * 512 * serve.DECODE_BYTES_PER_PIXEL)  # one portrait
    client = TestClient(create_app(classifier), base_url=LOCAL)
    photo = portrait_png()
    answers = []
    threads = [
        threading.Thread(target=lambda: answers.append(client.post("/predict", files={"file": ("a.png", photo)})))
        for _ in range(4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert [a.status_code for a in answers] == [200] * 4
    assert peak[0] == 1


def test_the_memory_budget_lets_a_large_photo_run_alone() -> None:
    import threading

    from ferflow.apps.serve import MemoryBudget

    budget = MemoryBudget(10)
    budget.take(6)
    waiter = threading.Thread(target=budget.take, args=(6,))
    waiter.start()
    waiter.join(timeout=0.2)
    assert waiter.is_alive()  # 6 + 6 does not fit in 10
    budget.give_back(6)
    waiter.join(timeout=5)
    assert not waiter.is_alive() and budget.held == 6
    budget.give_back(6)
    budget.take(25)  # more than the whole budget: runs when nothing else is held
    assert budget.held == 25


def test_a_stalled_upload_is_cut_off_and_a_crowd_is_told_to_wait(classifier, monkeypatch) -> None:
    import asyncio

    import httpx

    import ferflow.apps.serve as serve

    monkeypatch.setattr(serve, "STALL_SECONDS", 0.3)
    monkeypatch.setattr(serve, "MAX_UPLOADS", 1)
    app = create_app(classifier)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=LOCAL) as http:

            async def trickle():
                yield b"--abc\r\nContent-Disposition: form-data; name=file; filename=a.png\r\n\r\n"
                await asyncio.sleep(5)  # then nothing more arrives in time
                yield b"never"

            headers = {"content-type": "multipart/form-data; boundary=abc"}
            stalled = asyncio.create_task(http.post("/predict", content=trickle(), headers=headers))
            await asyncio.sleep(0.1)
            crowd = await http.post("/predict", files={"file": ("b.png", b"x")})
            return await stalled, crowd

    stalled, crowd = asyncio.run(scenario())
    assert stalled.status_code == 408 and "stalled" in stalled.json()["error"]
    assert crowd.status_code == 503 and "busy" in crowd.json()["error"]
