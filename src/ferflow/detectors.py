"""Face detectors whose models ship inside their pip wheels (nothing is downloaded at run time).

    haar      OpenCV's frontal-face Haar cascade (opencv-python-headless < 5)
    dlib_hog  dlib's HOG + linear SVM frontal-face detector (dlib-bin)
    mtcnn     the three-stage MTCNN networks (the `mtcnn` package; runs on TensorFlow)

Each takes a BGR or grey image and returns boxes (x, y, width, height). `detect_faces`
downscales large photos before detecting (detection cost grows with the pixel count, the
faces in a phone photo are far larger than needed) and maps the boxes back.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

Box = tuple[int, int, int, int]
DETECTORS = ("haar", "dlib_hog", "mtcnn")
DEFAULT_DETECTOR = "mtcnn"  # the best recall on the grids (README, Face detection)
DETECT_MAX_SIDE = 640  # photos are detected at most this large, unless the detector says otherwise


def to_grey(pixels: np.ndarray) -> np.ndarray:
    return pixels if pixels.ndim == 2 else cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)


class HaarDetector:
    name = "haar"
    detect_size = DETECT_MAX_SIDE

    def __init__(self) -> None:
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"OpenCV's face cascade '{path}' could not be loaded; "
                               "reinstall opencv-python-headless<5")

    def detect(self, pixels: np.ndarray, min_size: int) -> list[Box]:
        boxes = self.cascade.detectMultiScale(cv2.equalizeHist(to_grey(pixels)), scaleFactor=1.1, minNeighbors=5,
                                              minSize=(min_size, min_size))
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


class CompiledNetwork:
    """One of MTCNN's three networks, run through Keras's compiled predict step.

    The `mtcnn` package calls its networks eagerly, layer by layer: on a CPU three quarters of
    a 640x480 photo's detection time went to Python and dispatch overhead, not arithmetic.
    `predict_on_batch` runs the same weights as one compiled function (the same boxes, about
    2-3x faster; README, Face detection). The package expects tensors back, not arrays.
    """

    def __init__(self, network) -> None:
        self.network = network

    def __call__(self, images):
        import keras

        from ferflow.runtime import native_stderr_silenced

        if len(images) == 0:
            # No candidate boxes left: the network raises, the package reads that as "no face",
            # and TensorFlow's C++ runtime would log the error to stderr on every face-free photo.
            with native_stderr_silenced():
                return self.network.predict_on_batch(images)
        return [keras.ops.convert_to_tensor(output) for output in self.network.predict_on_batch(images)]


def pack_levels(shapes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Top-left corners for rectangles (height, width), largest first, packed into shelves.

    The canvas is as wide as the first two side by side; each shelf is as tall as its first
    rectangle. Sides are rounded up to even numbers so that every corner is even: a stride-2
    network's windows on the canvas then line up with its windows on each rectangle alone.
    Returns the corners and the canvas (height, width).
    """
    shapes = [(height + height % 2, width + width % 2) for height, width in shapes]
    canvas_width = sum(width for _, width in shapes[:2])
    corners, shelf_top, shelf_height, x = [], 0, 0, canvas_width
    for height, width in shapes:
        if x + width > canvas_width:  # start a new shelf below the last one
            shelf_top, shelf_height, x = shelf_top + shelf_height, height, 0
        corners.append((shelf_top, x))
        x += width
    return corners, (shelf_top + shelf_height, canvas_width)


class PackedPNet:
    """MTCNN's first stage, with the whole image pyramid scored in one network call.

    The package resizes the photo to each pyramid level with eager TensorFlow ops and runs
    P-Net once per level (8 levels at 320 px): on a CPU that is mostly per-call overhead. P-Net
    is fully convolutional with a stride of 2 and 12 px windows, so here the levels are resized
    with OpenCV, packed side by side into one canvas (`pack_levels`), scored in one compiled
    call, and each level's windows are read back from its part of the output. The proposals
    then go through the package's own box generation and non-maximum suppression. A level
    with an odd side gets its last row or column repeated: the package's padded pooling sees
    a partial window there, so boxes touching the photo's bottom or right edge may differ by
    a pixel or so; elsewhere they are the package's.
    """

    WINDOW, STRIDE = 12, 2

    def __init__(self, network) -> None:
        self.network = network

    def __call__(self, images_normalized, images_oshapes, min_face_size=20, min_size=12, scale_factor=0.709,
                 threshold_pnet=0.6, nms_pnet1=0.5, nms_pnet2=0.7, **_):
        import keras
        from mtcnn.utils.bboxes import generate_bounding_box, resize_to_square, smart_nms_from_bboxes, upscale_bboxes
        from mtcnn.utils.images import build_scale_pyramid

        images = np.asarray(images_normalized, dtype=np.float32)
        count, height, width = images.shape[:3]
        scales = max((build_scale_pyramid(shape[1], shape[0], min_face_size=min_face_size, min_size=min_size,
                                          scale_factor=scale_factor) for shape in images_oshapes), key=len)
        # Level sizes are truncated as the package's tf.image.resize call truncates them.
        levels = [(scale, int(height * scale), int(width * scale)) for scale in scales]
        levels = [level for level in levels if min(level[1:]) >= self.WINDOW]
        even = [(h + h % 2, w + w % 2) for _, h, w in levels]
        corners, (canvas_height, canvas_width) = pack_levels([(h, w) for _, h, w in levels])
        canvas = np.zeros((count, canvas_height, canvas_width, 3), dtype=np.float32)
        for (_, h, w), (even_h, even_w), (top, left) in zip(levels, even, corners):
            for index in range(count):
                level = cv2.resize(images[index], (w, h), interpolation=cv2.INTER_AREA)
                canvas[index, top:top + even_h, left:left + even_w] = np.pad(
                    level, ((0, even_h - h), (0, even_w - w), (0, 0)), mode="edge")
        regression, scores = self.network.predict_on_batch(canvas) if levels else (None, None)
        proposals = []
        for (scale, _, _), (even_h, even_w), (top, left) in zip(levels, even, corners):
            rows, cols = (even_h - self.WINDOW) // self.STRIDE + 1, (even_w - self.WINDOW) // self.STRIDE + 1
            part = np.s_[:, top // self.STRIDE:top // self.STRIDE + rows, left // self.STRIDE:left // self.STRIDE + cols]
            boxes = generate_bounding_box(keras.ops.convert_to_tensor(regression[part]),
                                          keras.ops.convert_to_tensor(scores[part]), threshold_pnet)
            boxes = upscale_bboxes(boxes, np.asarray([scale] * count))
            proposals.append(smart_nms_from_bboxes(boxes, threshold=nms_pnet1, method="union", initial_sort=False))
        proposals = np.concatenate(proposals, axis=0) if proposals else np.empty((0, 6))
        proposals = smart_nms_from_bboxes(proposals, threshold=nms_pnet2, method="union", initial_sort=True)
        return resize_to_square(proposals)


class MtcnnDetector:
    name = "mtcnn"
    # On the validation grids 320 px found as many faces as 640 (95.0% vs 93.1%) in half the
    # time. MTCNN finds faces down to 20 px at this size: raise it for small faces in big photos.
    detect_size = 320

    # Thresholds of the three stages, lower than the package's (0.6, 0.7, 0.8), and a denser
    # image pyramid (0.8 between levels instead of 0.709). Chosen on grids of validation faces
    # (960 placed; benchmarks/results/mtcnn_settings_val.csv, mtcnn_pyramid_val.csv): among the
    # settings with at most 0.25 false positives per 24 faces, one face in each portrait and
    # none in scikit-image's face-free photos, the fastest within 0.5 points of the best recall:
    # 96.9% found at 320 px, against 95.0% at 0.709 and 90.2% at the package's thresholds.
    def __init__(self, thresholds: tuple[float, float, float] = (0.4, 0.4, 0.5), scale_factor: float = 0.8) -> None:
        from ferflow.runtime import native_stderr_silenced

        with native_stderr_silenced():  # TensorFlow's C++ start-up notes
            import keras

            if keras.backend.backend() != "tensorflow":  # the package imports TensorFlow's own Keras
                raise RuntimeError(f"the mtcnn detector runs on TensorFlow only, not KERAS_BACKEND="
                                   f"{keras.backend.backend()}; unset KERAS_BACKEND or choose --detector haar or dlib_hog")
            try:
                from mtcnn import MTCNN
            except ImportError:
                raise RuntimeError("the mtcnn detector needs the mtcnn package: pip install mtcnn==1.0.0") from None
            self.model = MTCNN(device="CPU:0")
        for stage in self.model.stages:
            stage._model = CompiledNetwork(stage.model)  # mtcnn 1.0.0 has no setter
        self.model.stages[0] = PackedPNet(self.model.stages[0].model.network)
        self.thresholds = thresholds  # P-Net, R-Net, O-Net: a candidate box must pass all three
        self.scale_factor = scale_factor  # between the image pyramid's levels

    def detect(self, pixels: np.ndarray, min_size: int) -> list[Box]:
        rgb = cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB if pixels.ndim == 2 else cv2.COLOR_BGR2RGB)
        # The default pyramid (faces from 20 px) is used and smaller boxes are dropped here.
        pnet, rnet, onet = self.thresholds
        found = self.model.detect_faces(rgb, scale_factor=self.scale_factor, threshold_pnet=pnet,
                                        threshold_rnet=rnet, threshold_onet=onet)
        boxes = [tuple(int(v) for v in face["box"]) for face in found]
        return [box for box in boxes if min(box[2], box[3]) >= min_size]


@functools.cache
def face_detector(name: str = DEFAULT_DETECTOR):
    """A detector by name (see DETECTORS), built once per process and shared.

    Building MTCNN takes about 0.1 s (three networks and their weights): more than detecting
    one photo, so repeated `predict_paths` calls must not pay it again. Detectors keep no state
    between calls.
    """
    kinds = {"haar": HaarDetector, "dlib_hog": DlibHogDetector, "mtcnn": MtcnnDetector}
    if name not in kinds:
        raise ValueError(f"unknown face detector {name!r}; choose one of {list(DETECTORS)}")
    return kinds[name]()


def detect_faces(pixels: np.ndarray, detector, min_size: int = 30, max_side: int | None = None) -> list[Box]:
    """Boxes (x, y, w, h) of the faces found, in the original image's pixels, largest first.

    Images larger than `max_side` (default: the detector's `detect_size`) are detected on a
    downscaled copy.
    """
    max_side = max_side or detector.detect_size
    height, width = pixels.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    small = pixels if scale == 1.0 else cv2.resize(pixels, (round(width * scale), round(height * scale)),
                                                   interpolation=cv2.INTER_AREA)
    boxes = detector.detect(small, max(12, round(min_size * scale)))
    mapped = [tuple(int(round(v / scale)) for v in box) for box in boxes]
    return sorted(mapped, key=lambda b: -b[2] * b[3])
