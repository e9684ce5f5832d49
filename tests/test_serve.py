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

from ferflow.cli import main
from ferflow.predict import DEFAULT_MODEL, load_classifier
from ferflow.serve import create_app


@pytest.fixture(scope="module")
def classifier():
    return load_classifier(DEFAULT_MODEL)


@pytest.fixture(scope="module")
def client(classifier, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("serve_cwd")
    before = os.getcwd()
    os.chdir(workdir)  # anything written relative to the working folder would land here
    try:
        yield TestClient(create_app(classifier, max_upload_bytes=2_000_000))
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
    assert [served_face[k] for k in ("x", "y", "width", "height")] == [cli_face[k] for k in ("x", "y", "width", "height")]
    assert served_face["probabilities"] == pytest.approx(cli_face["probabilities"], abs=1e-5)


def truncated_jpeg() -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()[: len(encoded) * 2 // 3]  # OpenCV alone would decode the top two thirds


def photo_without_a_face() -> bytes:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(skimage_data.coffee(), cv2.COLOR_RGB2BGR))  # a cup of coffee
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("name, payload, status, message", [
    ("notes.txt", b"just some text, not an image", 400, "is not a readable image"),
    ("half.jpg", truncated_jpeg(), 400, "is not a readable image"),
    ("empty.jpg", b"", 400, "is empty"),
    ("coffee.jpg", photo_without_a_face(), 422, "no face found in 'coffee.jpg'"),
    ("huge.png", b"\x89PNG" + b"0" * 2_100_000, 413, "over the"),
])
def test_bad_uploads_get_a_clear_4xx_json_error_and_the_server_keeps_serving(client, name, payload, status,
                                                                            message) -> None:
    response = client.post("/predict", files={"file": (name, payload, "application/octet-stream")})
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    still_serving(client)


def test_a_request_without_a_file_is_refused(client) -> None:
    response = client.post("/predict", content=b"", headers={"content-type": "application/octet-stream"})
    assert response.status_code == 400
    assert "send the photo as multipart form field 'file'" in response.json()["error"]
    still_serving(client)
