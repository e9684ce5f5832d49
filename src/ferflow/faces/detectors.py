"""Face detectors whose models ship inside their pip wheels (nothing is downloaded at run time).

    haar      OpenCV's frontal-face Haar cascade (pip install 'ferflow[opencv]')
    dlib_hog  dlib's HOG + linear SVM frontal-face detector (dlib-bin)
    mtcnn     the three-stage MTCNN networks of the `mtcnn` package, exported to ONNX and run
              on ONNX Runtime (`mtcnn_tensorflow` runs the package's own networks on TensorFlow)

Each takes an RGB or grey image and returns boxes (x, y, width, height). `detect_faces`
downscales large photos before detecting (detection cost grows with the pixel count, the
faces in a phone photo are far larger than needed) and maps the boxes back.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from ferflow.faces.mtcnn import (
    SECOND_LOOK_THRESHOLD,
    Mtcnn,
    MtcnnDetector,
    MtcnnTensorFlow,
    SecondLook,
    load_second_look,
)
from ferflow.faces.photo import Box, detection_copy, iou, require_opencv, to_grey, turned_copy

DETECTORS = ("haar", "dlib_hog", "mtcnn", "mtcnn_tensorflow")
DEFAULT_DETECTOR = "mtcnn"  # the best recall on the grids (docs/face-detection.md)
DETECT_MAX_SIDE = 640  # photos are detected at most this large, unless the detector says otherwise


class HaarDetector:
    name = "haar"
    detect_size = DETECT_MAX_SIDE

    def __init__(self) -> None:
        cv2 = self.cv2 = require_opencv("the haar detector")
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(
                f"OpenCV's face cascade '{path}' could not be loaded; reinstall opencv-python-headless<5"
            )

    def detect(self, pixels: np.ndarray, min_size: int) -> list[Box]:
        boxes = self.cascade.detectMultiScale(
            self.cv2.equalizeHist(to_grey(pixels)), scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size)
        )
        return [tuple(int(v) for v in box) for box in boxes]


class DlibHogDetector:
    name = "dlib_hog"
    detect_size = DETECT_MAX_SIDE

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise RuntimeError("the dlib_hog detector needs dlib: pip install dlib-bin") from None
        self.detector = dlib.get_frontal_face_detector()

    def detect(self, pixels: np.ndarray, min_size: int) -> list[Box]:
        # The HOG window is 80 px; upsampling once finds faces down to about 40 px.
        upsample = 1 if min_size < 80 else 0
        rects = self.detector(np.ascontiguousarray(to_grey(pixels)), upsample)
        height, width = pixels.shape[:2]
        boxes = []
        for r in rects:
            left, top = max(0, r.left()), max(0, r.top())
            right, bottom = min(width, r.right()), min(height, r.bottom())
            if right - left >= min_size:
                boxes.append((left, top, right - left, bottom - top))
        return boxes


def face_detector(name: str = DEFAULT_DETECTOR, second_look: bool = False):
    """A detector by name (see DETECTORS), built once per process and shared.

    Building MTCNN (three networks and their weights) costs more than detecting one photo,
    so repeated `predict_paths` calls must not pay it again. Detectors keep no state
    between calls. `second_look`: MTCNN takes a second look at the candidates its last stage
    doubts (`ferflow.faces.mtcnn.SecondLook`), which finds more covered faces; it is a detector
    of its own, and other detectors ignore it.
    """
    return shared_detector(name, bool(second_look) and name in SECOND_LOOK_DETECTORS)


SECOND_LOOK_DETECTORS = ("mtcnn", "mtcnn_tensorflow")


@functools.cache
def shared_detector(name: str, second_look: bool):
    kinds = {
        "haar": HaarDetector,
        "dlib_hog": DlibHogDetector,
        "mtcnn": MtcnnDetector,
        "mtcnn_tensorflow": MtcnnTensorFlow,
    }
    if name not in kinds:
        raise ValueError(f"unknown face detector {name!r}; choose one of {list(DETECTORS)}")
    detector = kinds[name]()
    if second_look:
        detector.second_look = load_second_look(SECOND_LOOK_THRESHOLD)
    return detector


face_detector.cache_clear = shared_detector.cache_clear  # the next call builds afresh


def shrunk(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """(`pixels` downscaled to at most `max_side` on the long side, the scale): what is searched."""
    height, width = pixels.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return pixels, scale
    # At least one pixel a side: a very thin photo would otherwise shrink to nothing.
    return detection_copy(pixels, max(1, round(width * scale)), max(1, round(height * scale))), scale


def detect_faces(
    pixels: np.ndarray, detector, min_size: int = 30, max_side: int | None = None, **settings
) -> list[Box]:
    """Boxes (x, y, w, h) of the faces found, in the original image's pixels, largest first.

    Images larger than `max_side` (default: the detector's `detect_size`) are detected on a
    downscaled copy. `settings` go to the detector's `detect` (MTCNN: `thresholds`).
    """
    small, scale = shrunk(pixels, max_side or detector.detect_size)
    return faces_in_copy(small, scale, detector, min_size, **settings)


def faces_in_copy(small: np.ndarray, scale: float, detector, min_size: int = 30, **settings) -> list[Box]:
    """`detect_faces` on the copy that `shrunk` made at `scale`: boxes in the original's pixels."""
    boxes = detector.detect(small, max(12, round(min_size * scale)), **settings)
    mapped = [tuple(int(round(v / scale)) for v in box) for box in boxes]
    return sorted(mapped, key=lambda b: -b[2] * b[3])


# Where MTCNN finds no face in a photo, it searches copies turned by these angles, which find
# heads tilted by 20-45 degrees, keeping only the faces its last stage (O-Net) is this sure of:
# chosen on train/ faces, where this finds no face in face-free photos (docs/face-detection.md).
TURNS = (-30.0, 30.0)
TURNED_ONET = 0.97


def upright_box(box: tuple[float, float, float, float], back: np.ndarray, scale: float) -> tuple[float, ...]:
    """An (x, y, w, h) box found on a turned copy as the upright box of the same size around the
    same centre in the photo: `back` is `turned_copy`'s matrix, `scale` the shrink of the copy
    that was turned."""
    x, y, w, h = box
    copy_scale = 1 / float(np.hypot(*back[:, 0]))  # the fitting's shrink, from the matrix's length
    cx, cy = back @ np.array([x + w / 2, y + h / 2, 1.0])
    side_w, side_h = w / copy_scale, h / copy_scale
    return tuple(v / scale for v in (cx - side_w / 2, cy - side_h / 2, side_w, side_h))


def detect_turned_faces(
    pixels: np.ndarray,
    detector,
    min_size: int = 30,
    max_side: int | None = None,
    turns: tuple[float, ...] = TURNS,
    onet: float = TURNED_ONET,
    copy: tuple[np.ndarray, float] | None = None,
    second_look: SecondLook | None = None,
) -> list[Box]:
    """Faces found on copies of `pixels` turned by `turns` degrees, each as the upright box of the
    same size around the face's centre in `pixels`; a box that overlaps an earlier one is dropped.
    MTCNN only (other detectors return no boxes): its O-Net must give at least `onet`; with a
    `second_look`, a face O-Net doubts may pass that instead. `copy` is the (copy, scale) that
    `shrunk(pixels, max_side)` gives, where the caller has made it already."""
    if not isinstance(detector, Mtcnn):
        return []
    max_side = max_side or detector.detect_size
    # Turn the small copy that detection searches anyway: turning the whole photo costs more.
    small, scale = copy or shrunk(pixels, max_side)
    thresholds = (*detector.thresholds[:2], max(detector.thresholds[2], onet))
    boxes: list[Box] = []
    for degrees in turns:
        # Turned and fitted to `max_side` in one step: the canvas that holds the turned copy is larger.
        turned, back = turned_copy(small, degrees, max_side)
        copy_scale = 1 / float(np.hypot(*back[:, 0]))  # the fitting's shrink, from the matrix's length
        min_here = max(12, round(min_size * scale * copy_scale))
        found = detector.detect(turned, min_here, thresholds=thresholds, second_look=second_look)
        for x, y, w, h in found:
            box = tuple(int(round(v)) for v in upright_box((x, y, w, h), back, scale))
            if all(iou(box, kept) < 0.3 for kept in boxes):
                boxes.append(box)
    return sorted(boxes, key=lambda b: -b[2] * b[3])
