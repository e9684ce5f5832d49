"""MTCNN (Zhang et al., 2016) around the `mtcnn` package's three networks, its stages in NumPy.

The image pyramid goes through P-Net in one call (`PackedPNet`), then R-Net and O-Net score the
candidates' patches (`refine_boxes`). `MtcnnDetector` runs the networks exported to ONNX on ONNX
Runtime (the default; the package's assets); `MtcnnTensorFlow` runs the package's own networks
on TensorFlow, to export them and to check the ONNX detector against. Boxes, suppression and
the pyramid reproduce the package's (tests compare them). A detector may take a second look
(`SecondLook`, this project's own small network) at the candidates O-Net doubts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ferflow.faces.photo import Box, area_shrunk, to_rgb


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


def suppress_overlaps(boxes: np.ndarray, threshold: float, method: str = "union") -> np.ndarray:
    """Indices of the boxes (x1, y1, x2, y2, ...; best score first) that the `mtcnn` package keeps.

    Its suppression drops a box that any better box overlaps by more than `threshold`, even a
    better box that was itself dropped (classic NMS would let that one suppress nothing).
    Overlap is intersection over union, or over the smaller box with method="min".
    """
    x1, y1, x2, y2 = (boxes[:, column] for column in range(4))
    area = (x2 - x1) * (y2 - y1)
    inter_w = np.maximum(0, np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]))
    inter_h = np.maximum(0, np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]))
    inter = inter_w * inter_h
    base = area[:, None] + area[None] - inter if method == "union" else np.minimum(area[:, None], area[None])
    with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes: NaN, which suppresses nothing
        overlap = inter / base
    return np.flatnonzero(~np.triu(overlap > threshold, k=1).any(axis=0))


def best_first(boxes: np.ndarray, score_column: int = 4) -> np.ndarray:
    # The package's order (a reversed argsort), so that tied scores come out as in the package.
    return boxes[np.argsort(boxes[:, score_column])[::-1]]


def to_square(boxes: np.ndarray) -> np.ndarray:
    """Boxes (x1, y1, x2, y2, ...) grown to squares about their centres, as the package does."""
    boxes = boxes.copy()
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    boxes[:, 0] += (width - side) / 2
    boxes[:, 1] += (height - side) / 2
    boxes[:, 2:4] = boxes[:, 0:2] + side[:, None]
    return boxes


def graph_function(network, patch_size: int | None = None):
    """One of MTCNN's networks as a single TensorFlow graph, traced once for any input size.

    The package calls its networks eagerly, layer by layer; on a CPU most of that time was
    Python and dispatch. Keras's `predict_on_batch` compiles them but still spends about half
    a millisecond a call matching arguments; a concrete function takes arrays straight in. With
    `patch_size`, the function takes the photo and boxes (y1, x1, y2, x2 as fractions of its
    sides) and cuts the patches itself, as the package's `extract_patches` does
    (`crop_and_resize`), in the same graph. MTCNN runs on TensorFlow only (its package
    imports it), so this is TensorFlow code.
    """
    import tensorflow as tf

    images = tf.TensorSpec([None, None, None, 3], tf.float32)
    if patch_size is None:
        return tf.function(lambda batch: network(batch, training=False)).get_concrete_function(images)

    def score_patches(image, boxes):
        patches = tf.image.crop_and_resize(
            image, boxes, tf.zeros(tf.shape(boxes)[:1], tf.int32), (patch_size, patch_size)
        )
        return network(patches, training=False)

    return tf.function(score_patches).get_concrete_function(images, tf.TensorSpec([None, 4], tf.float32))


def scale_pyramid(width: int, height: int, min_face_size: int, scale_factor: float, window: int = 12) -> np.ndarray:
    """The image pyramid's scales, as the `mtcnn` package's `build_scale_pyramid` computes them
    (written out here because importing that package imports TensorFlow)."""
    count = round(-((np.log(min(width, height) / window) / np.log(scale_factor)) + 1))
    return (window / min_face_size) * scale_factor ** np.arange(count)


class PackedPNet:
    """MTCNN's first stage, with the whole image pyramid scored in one network call.

    The package resizes the photo to each pyramid level with eager TensorFlow ops, runs P-Net
    once per level (8 levels at 320 px) and turns each output into boxes with more eager ops:
    on a CPU that is mostly per-call overhead. P-Net is fully convolutional with a stride of 2
    and 12 px windows, so here the levels are shrunk by area averaging, packed side by side into one
    canvas (`pack_levels`), scored in one compiled call, and each level's windows are read back
    from its part of the output in NumPy, with the package's arithmetic and suppression. A
    level with an odd side gets its last row or column repeated: the package's padded pooling
    sees a partial window there, so boxes touching the photo's bottom or right edge may differ
    by a pixel or so; elsewhere they are the package's.
    """

    WINDOW, STRIDE = 12, 2

    def __init__(
        self,
        network,
        scale_factor: float,
        threshold: float,
        min_face_size: int = 20,
        nms_level: float = 0.5,
        nms_all: float = 0.7,
    ) -> None:
        self.network = network
        self.scale_factor, self.threshold, self.min_face_size = scale_factor, threshold, min_face_size
        self.nms_level, self.nms_all = nms_level, nms_all  # suppression within a level, then across levels

    def levels(self, height: int, width: int) -> list[tuple[float, int, int]]:
        """(scale, height, width) of each pyramid level, as the package builds them."""
        scales = scale_pyramid(width, height, self.min_face_size, self.scale_factor, self.WINDOW)
        # Level sizes are truncated as the package's tf.image.resize call truncates them.
        levels = [(float(scale), int(height * scale), int(width * scale)) for scale in scales]
        return [level for level in levels if min(level[1:]) >= self.WINDOW]

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Square candidate boxes (x1, y1, x2, y2, score) in a normalized photo's pixels."""
        levels = self.levels(*image.shape[:2])
        even = [(h + h % 2, w + w % 2) for _, h, w in levels]
        corners, canvas_shape = pack_levels([(h, w) for _, h, w in levels])
        canvas = np.zeros((1, *canvas_shape, 3), dtype=np.float32)
        for (_, h, w), (even_h, even_w), (top, left) in zip(levels, even, corners):
            level = area_shrunk(image, w, h)
            canvas[0, top : top + even_h, left : left + even_w] = np.pad(
                level, ((0, even_h - h), (0, even_w - w), (0, 0)), mode="edge"
            )
        regression, scores = (np.asarray(output)[0] for output in self.network(canvas)) if levels else (None, None)
        proposals = [np.empty((0, 5))]
        for (scale, _, _), (even_h, even_w), (top, left) in zip(levels, even, corners):
            rows, cols = (even_h - self.WINDOW) // self.STRIDE + 1, (even_w - self.WINDOW) // self.STRIDE + 1
            part = np.s_[
                top // self.STRIDE : top // self.STRIDE + rows, left // self.STRIDE : left // self.STRIDE + cols
            ]
            level_scores, level_regression = scores[part][..., 1], regression[part]
            ys, xs = np.nonzero(level_scores > self.threshold)
            # Each window's corners moved by the regression, in the photo's pixels. The package
            # takes a window's corners as (1, 1) and (12, 12), so it is 11 px wide.
            window = np.stack([xs, ys, xs, ys], axis=1) * self.STRIDE + [1, 1, self.WINDOW, self.WINDOW]
            found = (window + level_regression[ys, xs] * (self.WINDOW - 1)) / scale
            boxes = best_first(np.column_stack([found, level_scores[ys, xs]]))
            proposals.append(boxes[suppress_overlaps(boxes, self.nms_level)])
        boxes = best_first(np.concatenate(proposals))
        return to_square(boxes[suppress_overlaps(boxes, self.nms_all)])


def patch_fractions(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """As the package's extract_patches: boxes as (y1, x1, y2, x2) fractions of `image`'s height
    and width (`image` with a batch axis)."""
    height, width = image.shape[1:3]
    return (boxes[:, [1, 0, 3, 2]] / [height, width, height, width]).astype(np.float32)


def refine_boxes(
    image: np.ndarray,
    boxes: np.ndarray,
    score_patches,
    threshold: float,
    nms: float,
    method: str,
    second_look: SecondLook | None = None,
) -> np.ndarray:
    """MTCNN's second or third stage: score each box's patch, move the box, keep confident ones.

    `image` is the normalized photo with a batch axis, `boxes` rows of (x1, y1, x2, y2, score),
    `score_patches` a `graph_function` with a patch size. With a `second_look`, boxes scored
    between its `lowest` and `threshold` are kept where it says they are faces.
    """
    if len(boxes) == 0:  # the network takes no empty batch
        return boxes
    fractions = patch_fractions(image, boxes)
    outputs = score_patches(image, fractions)
    offsets, scores = np.asarray(outputs[0]), np.asarray(outputs[-1])  # O-Net's landmarks in between
    sides = np.tile(boxes[:, 2:4] - boxes[:, 0:2] + 1, 2)  # the package's + 1
    moved = np.column_stack([boxes[:, :4] + offsets * sides, scores[:, 1]])
    keep = moved[:, 4] > threshold
    if second_look is not None:
        doubtful = ~keep & (moved[:, 4] >= second_look.lowest)
        if doubtful.any():
            keep[doubtful] = second_look(image[0], fractions[doubtful])
    moved = best_first(moved[keep])
    return moved[suppress_overlaps(moved, nms, method)]


class SecondLook:
    """A small network's second look at the candidates O-Net doubts (scored from `lowest` up to
    its threshold): each candidate's 48x48 patch, in grey, is a face when the network's score
    reaches `threshold`. Trained on covered faces, which O-Net scores as low as clutter
    (docs/face-detection.md)."""

    SIZE = 48

    def __init__(self, network, threshold: float, lowest: float = 0.02) -> None:
        self.network, self.threshold, self.lowest = network, threshold, lowest

    def scores(self, image: np.ndarray, fractions: np.ndarray) -> np.ndarray:
        """The network's face scores of the patches at `fractions` of the normalized `image`."""
        return self.network(grey_patches(image, fractions, self.SIZE)).reshape(-1)

    def __call__(self, image: np.ndarray, fractions: np.ndarray) -> np.ndarray:
        return self.scores(image, fractions) >= self.threshold


def grey_patches(image: np.ndarray, fractions: np.ndarray, size: int) -> np.ndarray:
    """(n, size, size, 1) grey patches of the normalized `image` at `fractions`, as O-Net cuts them."""
    return crop_and_resize(image, fractions, size).mean(axis=3, keepdims=True)


class Mtcnn:
    """MTCNN's three stages around its networks: the image pyramid through P-Net (`PackedPNet`),
    then R-Net and O-Net on the candidates' patches (`refine_boxes`). Subclasses supply the
    networks: ONNX Runtime (`MtcnnDetector`, the default) or TensorFlow (`MtcnnTensorFlow`)."""

    name = "mtcnn"
    # Chosen on the validation grids (docs/face-detection.md). MTCNN finds faces down to 20 px at
    # this size: raise it for small faces in big photos.
    detect_size = 320
    # Thresholds of the three stages, lower than the package's (0.6, 0.7, 0.8), and a denser
    # image pyramid (0.8 between levels instead of 0.709), chosen on grids of validation faces
    # (docs: face detection).
    THRESHOLDS = (0.4, 0.4, 0.5)
    SCALE_FACTOR = 0.8

    def __init__(
        self,
        pnet,
        rnet_patches,
        onet_patches,
        thresholds: tuple[float, float, float] = THRESHOLDS,
        scale_factor: float = SCALE_FACTOR,
    ) -> None:
        self.thresholds = thresholds  # P-Net, R-Net, O-Net: a candidate box must pass all three
        self.scale_factor = scale_factor  # between the image pyramid's levels
        self.pnet = PackedPNet(pnet, scale_factor, thresholds[0])
        self.rnet, self.onet = rnet_patches, onet_patches
        self.second_look: SecondLook | None = None  # off unless set

    def find(
        self,
        rgb: np.ndarray,
        thresholds: tuple[float, float, float] | None = None,
        second_look: SecondLook | None = None,
    ) -> np.ndarray:
        """Boxes (x1, y1, x2, y2, confidence) of the faces in an RGB photo, best first; `thresholds`
        and `second_look` replace the detector's own for this call."""
        thresholds = thresholds or self.thresholds
        image, boxes = self.candidates(rgb, thresholds)
        # The detector's own second look is not for a caller that asks O-Net for more than its own
        # threshold (the turned copies' search): that caller passes one of its own, if any.
        if second_look is None and thresholds[2] <= self.thresholds[2]:
            second_look = self.second_look
        boxes = refine_boxes(image[None], boxes, self.onet, thresholds[2], 0.7, "min", second_look)
        height, width = rgb.shape[:2]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width - 1)  # inside the photo, as the package keeps them
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height - 1)
        return boxes

    def candidates(
        self, rgb: np.ndarray, thresholds: tuple[float, float, float] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The normalized photo and the squared boxes that P-Net and R-Net keep: O-Net's input."""
        thresholds = thresholds or self.thresholds
        self.pnet.threshold, self.pnet.scale_factor = thresholds[0], self.scale_factor  # settings may change
        image = (rgb.astype(np.float32) - 127.5) / 128  # the package's normalization (exact in float32)
        boxes = to_square(refine_boxes(image[None], self.pnet(image), self.rnet, thresholds[1], 0.7, "union"))
        return image, boxes

    def detect(
        self,
        pixels: np.ndarray,
        min_size: int,
        thresholds: tuple[float, float, float] | None = None,
        second_look: SecondLook | None = None,
    ) -> list[Box]:
        found = self.find(to_rgb(pixels), thresholds, second_look)
        # (x, y, width, height), rounded as the package rounds them. The default pyramid (faces
        # from 20 px) is used and smaller boxes are dropped here.
        corners_and_sides = np.round(np.column_stack([found[:, :2], found[:, 2:4] - found[:, :2]]))
        boxes = [tuple(int(v) for v in box) for box in corners_and_sides]
        return [box for box in boxes if min(box[2], box[3]) >= min_size]


MTCNN_FILES = {"pnet": "mtcnn_pnet.onnx", "rnet": "mtcnn_rnet.onnx", "onet": "mtcnn_onet.onnx"}


class MtcnnDetector(Mtcnn):
    """MTCNN on ONNX Runtime: the `mtcnn` package's networks, exported once to the package's
    assets (`python -m ferflow.pipeline.onnx_export`), so detection needs no TensorFlow."""

    def __init__(self, threads: int | None = None, **settings) -> None:
        from ferflow.model.onnx_runtime import OnnxModel, asset

        pnet, rnet, onet = (OnnxModel(asset(MTCNN_FILES[n]), threads) for n in ("pnet", "rnet", "onet"))
        super().__init__(pnet.outputs, patch_scorer(rnet, 24), patch_scorer(onet, 48), **settings)


SECOND_LOOK_FILE = "face_second_look.onnx"
# The second look's score for a face, chosen on validation faces (docs/face-detection.md).
SECOND_LOOK_THRESHOLD = 0.8


def load_second_look(threshold: float, path: str | Path | None = None, threads: int | None = None) -> SecondLook:
    """The second look on ONNX Runtime, from the package's assets unless `path` names a file."""
    from ferflow.model.onnx_runtime import OnnxModel, asset

    return SecondLook(OnnxModel(path or asset(SECOND_LOOK_FILE), threads).predict_on_batch, threshold)


def patch_scorer(network, size: int):
    """score_patches for `refine_boxes`: cut the boxes' patches in NumPy, then run `network`."""
    return lambda image, boxes: network.outputs(crop_and_resize(image[0], boxes, size))


def crop_and_resize(image: np.ndarray, boxes: np.ndarray, size: int) -> np.ndarray:
    """TensorFlow's `tf.image.crop_and_resize` (bilinear, extrapolation 0) in NumPy.

    `image` is (height, width, channels), `boxes` rows of (y1, x1, y2, x2) as fractions of the
    image's height and width; returns (n, size, size, channels) float32 patches.
    """
    height, width = image.shape[:2]
    steps = np.arange(size, dtype=np.float32) / np.float32(size - 1)
    y1, x1, y2, x2 = (boxes[:, i : i + 1].astype(np.float32) for i in range(4))
    ys = y1 * (height - 1) + steps * ((y2 - y1) * (height - 1))  # (n, size) sample rows
    xs = x1 * (width - 1) + steps * ((x2 - x1) * (width - 1))
    top, left = np.floor(ys), np.floor(xs)
    y_lerp, x_lerp = (ys - top)[:, :, None, None], (xs - left)[:, None, :, None]
    top_i, left_i = top.astype(int), left.astype(int)
    bottom_i, right_i = np.ceil(ys).astype(int), np.ceil(xs).astype(int)

    def gather(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return image[np.clip(rows, 0, height - 1)[:, :, None], np.clip(cols, 0, width - 1)[:, None, :]]

    top_left, bottom_left = gather(top_i, left_i), gather(bottom_i, left_i)
    upper = top_left + (gather(top_i, right_i) - top_left) * x_lerp
    lower = bottom_left + (gather(bottom_i, right_i) - bottom_left) * x_lerp
    patches = upper + (lower - upper) * y_lerp
    outside = ((ys < 0) | (ys > height - 1))[:, :, None] | ((xs < 0) | (xs > width - 1))[:, None, :]
    patches[outside] = 0.0
    return patches.astype(np.float32)


class MtcnnTensorFlow(Mtcnn):
    """MTCNN on TensorFlow with the `mtcnn` package's networks, as graphs (`graph_function`).

    The package calls its networks eagerly, stage by stage, which is slow; here the stages
    around the networks are NumPy (docs/face-detection.md has the timings). Kept to export the networks to ONNX and to
    check the ONNX detector against (it needs TensorFlow and the mtcnn package).
    """

    name = "mtcnn_tensorflow"

    def __init__(self, **settings) -> None:
        pnet, rnet, onet = mtcnn_networks()
        super().__init__(
            graph_function(pnet), graph_function(rnet, patch_size=24), graph_function(onet, patch_size=48), **settings
        )


def mtcnn_networks() -> tuple:
    """The `mtcnn` package's P-Net, R-Net and O-Net (Keras models on TensorFlow, weights from its wheel)."""
    from ferflow.runtime import native_stderr_silenced

    with native_stderr_silenced():  # TensorFlow's C++ start-up notes
        import keras

        if keras.backend.backend() != "tensorflow":  # the package imports TensorFlow's own Keras
            raise RuntimeError(
                f"the mtcnn package runs on TensorFlow only, not KERAS_BACKEND="
                f"{keras.backend.backend()}; unset KERAS_BACKEND"
            )
        try:
            from mtcnn import MTCNN
        except ImportError:
            raise RuntimeError("the TensorFlow MTCNN needs the mtcnn package: pip install mtcnn==1.0.0") from None
        package = MTCNN(device="CPU:0")  # the three networks, with the weights in its wheel
    return tuple(stage.model for stage in package.stages)
