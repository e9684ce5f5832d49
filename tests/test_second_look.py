"""MTCNN's second look at the candidates its last stage (O-Net) doubts: which candidates it sees,
that the shipped network finds covered faces the one search misses, and how it is switched on."""

from __future__ import annotations

import functools
import json

import numpy as np
from conftest import SAMPLE
from PIL import Image as PILImage
from skimage import data as skimage_data

from ferflow.apps.cli import EXIT_NOTHING, EXIT_OK, main
from ferflow.faces.detectors import detect_faces, face_detector
from ferflow.faces.mtcnn import SECOND_LOOK_THRESHOLD, MtcnnDetector, SecondLook, refine_boxes
from ferflow.faces.photo import to_rgb

FACE_FREE = ("coffee", "chelsea", "rocket", "brick", "immunohistochemistry", "hubble_deep_field")


def onet_like(scores: list[float]):
    """A stand-in for O-Net: each patch keeps its box (no offsets) and gets the next score."""
    confident = np.array(scores, dtype=np.float32)
    return lambda image, fractions: [np.zeros((len(fractions), 4)), np.column_stack([1 - confident, confident])]


def test_only_candidates_between_lowest_and_onets_threshold_get_the_second_look() -> None:
    boxes = np.array([[x, 0, x + 10, 10, 1.0] for x in (0, 20, 40, 60)])  # four boxes side by side
    shown = []

    def network(patches: np.ndarray) -> np.ndarray:
        shown.append(patches.shape)
        return np.array([[0.95], [0.2]])  # the first doubted box is a face, the second is not

    look = SecondLook(network, threshold=0.9, lowest=0.02)
    image = np.zeros((1, 20, 80, 3), np.float32)
    scores = onet_like([0.9, 0.3, 0.3, 0.01])  # sure, doubted, doubted, below the lowest
    kept = refine_boxes(image, boxes, scores, 0.5, 0.7, "min", look)
    assert shown == [(2, 48, 48, 1)]  # only the two doubted boxes, as grey 48x48 patches
    assert sorted(kept[:, 0].tolist()) == [0, 20]
    assert refine_boxes(image, boxes, scores, 0.5, 0.7, "min")[:, 0].tolist() == [0]


def covered_face_photo(face_path) -> np.ndarray:
    """A grey 400x300 photo of a 144 px sample face with a dark band over its eyes (sunglasses)."""
    face = np.asarray(PILImage.open(face_path).convert("L").resize((144, 144), PILImage.BICUBIC)).copy()
    face[42:72, 12:132] = 20
    canvas = np.full((300, 400), 128, np.uint8)
    canvas[60:204, 120:264] = face
    return canvas


@functools.cache
def covered_faces(count: int = 60) -> tuple[list[np.ndarray], list[int], list[int]]:
    """Covered photos of the first `count` sample test faces, and the faces found in each by the
    one search and with the second look."""
    photos = [covered_face_photo(path) for path in sorted((SAMPLE / "test").glob("*/*.jpg"))[:count]]
    plain, looking = face_detector("mtcnn"), face_detector("mtcnn", second_look=True)
    return (
        photos,
        [len(detect_faces(photo, plain)) for photo in photos],
        [len(detect_faces(photo, looking)) for photo in photos],
    )


def test_the_shipped_second_look_finds_covered_faces_the_one_search_misses() -> None:
    photos, plain, looking = covered_faces()
    assert sum(looking) > sum(plain) + 3, (plain, looking)
    assert all(s >= p for p, s in zip(plain, looking))  # it only adds faces
    assert max(looking) == 1  # one face, one box


def test_the_second_look_adds_no_box_in_face_free_photos() -> None:
    plain, looking = face_detector("mtcnn"), face_detector("mtcnn", second_look=True)
    for name in FACE_FREE:
        photo = getattr(skimage_data, name)()
        assert len(detect_faces(photo, looking)) == len(detect_faces(photo, plain)), name


def test_the_turned_copies_stricter_search_takes_no_second_look() -> None:
    photos, plain, looking = covered_faces()
    photo = photos[next(i for i, (p, s) in enumerate(zip(plain, looking)) if s > p)]
    detector = MtcnnDetector()
    shown = []
    detector.second_look = SecondLook(lambda patches: shown.append(len(patches)) or np.ones((len(patches), 1)), 0.5)
    stricter = (*detector.thresholds[:2], 0.97)
    detector.find(to_rgb(photo), thresholds=stricter)
    assert shown == []
    detector.find(to_rgb(photo))
    assert shown and shown[0] >= 1
    own = SecondLook(lambda patches: np.zeros((len(patches), 1)), 0.5)  # a caller's own look, saying no
    shown.clear()
    assert len(detector.find(to_rgb(photo), thresholds=stricter, second_look=own)) == 0
    assert shown == []  # the caller's replaced the detector's


def test_face_detector_with_the_second_look_is_its_own_shared_instance() -> None:
    plain, looking = face_detector("mtcnn"), face_detector("mtcnn", second_look=True)
    assert plain is not looking and looking is face_detector("mtcnn", second_look=True)
    assert plain.second_look is None and looking.second_look.threshold == SECOND_LOOK_THRESHOLD


def test_second_look_is_an_option_and_on_with_quality_best(tmp_path) -> None:
    photos, plain, looking = covered_faces()
    found = next(i for i, (p, s) in enumerate(zip(plain, looking)) if s > p)
    path = tmp_path / "covered.png"
    PILImage.fromarray(photos[found]).save(path)
    for extra, faces in (([], 0), (["--second-look"], 1), (["--quality", "best"], 1)):
        out = tmp_path / f"faces{len(extra)}.json"
        code = main(["predict", str(path), "--json", str(out), *extra])
        assert len(json.loads(out.read_text())["faces"]) == faces, extra
        assert code == (EXIT_OK if faces else EXIT_NOTHING), extra


def test_fer_serve_takes_the_second_look_only_as_quality_best() -> None:
    import io

    from fastapi.testclient import TestClient

    from ferflow.apps.serve import create_app
    from ferflow.faces.predict import DEFAULT_MODEL, load_classifier

    photos, plain, looking = covered_faces()
    found = next(i for i, (p, s) in enumerate(zip(plain, looking)) if s > p)
    png = io.BytesIO()
    PILImage.fromarray(photos[found]).save(png, format="PNG")
    classifier = load_classifier(DEFAULT_MODEL)
    for quality, status in (("custom", 422), ("best", 200)):  # 422: no face found
        served = {"quality": quality, "file": classifier.path.name, "runtime": classifier.runtime, "tta": False}
        client = TestClient(create_app(classifier, model=served), base_url="http://127.0.0.1:8000")
        response = client.post("/predict", files={"file": ("covered.png", png.getvalue(), "image/png")})
        assert response.status_code == status, (quality, response.text)
        if status == 200:
            assert len(response.json()["faces"]) == 1
