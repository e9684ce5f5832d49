"""Use a trained model on photos and videos: find faces, classify their emotion, report.

    from ferflow.faces.predict import PredictOptions, load_classifier, predict_paths
    classifier = load_classifier()  # the shipped model; or load_classifier("models/model.keras")
    # Face crops (FER-2013 faces): classify them whole. Photos: leave out the options.
    result = predict_paths(["data/sample/test/happy"], classifier, PredictOptions(detect=False))
    for face in result.faces:
        print(face.file, face.box, face.emotion, round(face.confidence, 2))
    print(result.problems)

Faces are found with MTCNN by default (its weights ship inside the `mtcnn` wheel; OpenCV's
Haar cascade and dlib's HOG detector are the alternatives: nothing is downloaded), cropped with
a margin, converted to grey and resized to 48x48 like FER-2013.
Each problem (a missing path, an unreadable file, no face found) is reported per file and the
run goes on; only a model that cannot be used stops everything, before any work.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ferflow import IMAGE_SIZE, paths
from ferflow.faces.detectors import (
    DEFAULT_DETECTOR,
    Box,
    detect_turned_faces,
    face_detector,
    faces_in_copy,
    shrunk,
)
from ferflow.faces.photo import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    Image,
    ImageError,
    crop_face,
    first_line,
    is_video,
    read_images,
    resized_face,
    to_grey,
    to_rgb,
)
from ferflow.faces.records import FaceResult as FaceResult  # re-exported: the Python API
from ferflow.faces.records import Problem as Problem
from ferflow.faces.video import faces_by_video, follow_faces, write_annotated_video
from ferflow.model.classifier import Classifier as Classifier
from ferflow.model.classifier import load_classifier as load_classifier
from ferflow.model.onnx_runtime import ASSETS
from ferflow.model.sidecar import ModelFileError as ModelFileError

# The shipped models, exported to ONNX and installed with the package (see ferflow.model.onnx_runtime):
# the single model, and the ensemble's card that lists its members' ONNX files (the first is the
# single model's). A quality is a model and whether to average over test-time views (ten-crop, flips).
QUALITIES = {"fast": (ASSETS / "fer2013.onnx", False), "best": (ASSETS / "fer2013_ensemble.json", True)}
DEFAULT_QUALITY = "fast"
DEFAULT_MODEL = QUALITIES[DEFAULT_QUALITY][0]
PRETRAINED_KERAS = Path(paths.PRETRAINED) / "fer2013.keras"  # in a checkout: what ships, as Keras


# ----------------------------------------------------------------------------- inputs


def expand_paths(
    paths: list[str | Path], include_videos: bool, skip: Path | None = None
) -> tuple[list[Path], list[Problem]]:
    """Files to process (folders searched recursively, sorted) and the paths that cannot be read:
    missing, or not a regular file (a FIFO, a socket, a link to nothing). A folder `skip` (the
    annotated copies of an earlier run) is left out of the search."""
    suffixes = IMAGE_SUFFIXES | (VIDEO_SUFFIXES if include_videos else set())
    skipped = skip.resolve() if skip is not None else None
    files, problems = [], []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for found in sorted(path.rglob("*")):
                if found.suffix.lower() not in suffixes or found.name.startswith("."):
                    continue
                if skipped is not None and skipped in found.resolve().parents:
                    continue
                if found.is_file():
                    files.append(found)
                elif not found.is_dir():
                    problems.append(not_a_file(found))
        elif path.is_file():
            files.append(path)
        elif path.exists() or path.is_symlink():
            problems.append(not_a_file(path))
        else:
            problems.append(Problem(str(path), "missing", f"'{path}' does not exist"))
    return files, problems


def not_a_file(path: Path) -> Problem:
    """The problem of a path that is there but holds no image: a FIFO, socket, device or dangling link."""
    if path.is_symlink() and not path.exists():
        return Problem(str(path), "missing", f"'{path}' is a link to '{os.readlink(path)}', which does not exist")
    return Problem(str(path), "unreadable", f"'{path}' is not a regular file (a FIFO, socket or device); skipped")


MODEL_BATCH = 256  # views per model call: the batch the evaluate stage times for throughput


def classify_faces(classifier: Classifier, faces: np.ndarray, tta: bool, batch_size: int = MODEL_BATCH) -> np.ndarray:
    """Probabilities for (n, 48, 48) grey faces; with `tta`, averaged over the flip (and ten-crop)
    views, `batch_size` views a call (`Classifier.probabilities`)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if len(faces) == 0:
        return np.zeros((0, len(classifier.class_names)), dtype="float32")
    mode = ("tencrop" if classifier.crop_size else "flip") if tta else "none"
    return classifier.probabilities(faces, mode, batch_size)


@dataclass
class PredictOptions:
    detect: bool = True
    tta: bool = False
    # A square a little inside MTCNN's box matches FER-2013's framing best (chosen on validation
    # grids: docs/face-detection.md).
    margin: float = -0.025  # share of the box added per side; negative tightens
    square: bool = True  # grow the box to a square first
    min_face: int = 30
    detect_size: int | None = None  # larger photos are detected on a copy this large; None: the detector's
    detector: str = DEFAULT_DETECTOR
    find_turned: bool = False  # where a photo shows no upright face, search turned copies (MTCNN)
    second_look: bool = False  # a second look at the candidates MTCNN's last stage doubts (covered faces)
    batch_size: int = MODEL_BATCH  # faces gathered across images before they are classified
    progress: bool = False  # a tqdm bar on stderr for more than a few files
    video_stride: int | None = None
    smoothing: float = 0.5  # seconds: the time constant of each video track's moving average
    detect_every: int = 1  # in a video, search every N-th sampled frame; the others reuse its boxes
    annotate_dir: Path | None = None

    def __post_init__(self) -> None:
        """Refuse values that cannot be used, naming the option (its `fer predict` flag)."""
        low, high = MARGIN_RANGE
        if not (math.isfinite(self.margin) and low <= self.margin <= high):
            raise ValueError(f"margin must be a share from {low} to {high}, got {self.margin:g}")
        if self.min_face < 1:
            raise ValueError(f"min-face must be 1 or more, got {self.min_face}")
        if self.detect_size is not None and self.detect_size < MIN_DETECT_SIZE:
            raise ValueError(f"detect-size must be {MIN_DETECT_SIZE} or more, got {self.detect_size}")
        if self.video_stride is not None and self.video_stride < 1:
            raise ValueError(f"video-stride must be 1 or more, got {self.video_stride}")
        if self.detect_every < 1:
            raise ValueError(f"detect-every must be 1 or more, got {self.detect_every}")
        if not (math.isfinite(self.smoothing) and 0 <= self.smoothing <= MAX_SMOOTHING_S):
            raise ValueError(f"smooth must be 0 to {MAX_SMOOTHING_S:g} seconds, got {self.smoothing:g}")
        if self.batch_size < 1:
            raise ValueError(f"batch-size must be 1 or more, got {self.batch_size}")


MARGIN_RANGE = (-0.4, 2.0)  # -0.5 would leave no face at all; 2 already frames five face widths
MIN_DETECT_SIZE = 48  # one FER-sized face; MTCNN finds nothing under 20 px
MAX_SMOOTHING_S = 60.0  # longer would average a whole interview into one label


class EngineError(RuntimeError):
    """The engine itself failed (a Ray job whose workers died or could not load the model), as
    opposed to one file's problem."""


@dataclass
class Prediction:
    faces: list[FaceResult] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    files_seen: int = 0
    interrupted: bool = False  # Ctrl-C stopped the run; the faces are those found until then


def predict_paths(paths: list[str | Path], classifier: Classifier, options: PredictOptions | None = None) -> Prediction:
    """Find and classify every face in the images (and videos) under `paths`.

    Per-file problems are collected, not raised, so one bad file does not stop the run. Ctrl-C
    (KeyboardInterrupt) ends the run early with the faces found so far (`Prediction.interrupted`).
    """
    options = options or PredictOptions()
    files, problems = expand_paths(paths, options.video_stride is not None, skip=options.annotate_dir)
    result = Prediction(problems=problems)
    detector = face_detector(options.detector, options.second_look) if options.detect else None
    inputs = {path.resolve() for path in files}  # an annotated copy never replaces one of them
    pending: list[tuple[Image, list[Box], list[np.ndarray]]] = []

    def classify_pending() -> None:
        # One model call for the faces of many images: per-call overhead dominates small batches.
        crops = np.stack([crop for _, _, image_crops in pending for crop in image_crops])
        probabilities = classify_faces(classifier, crops, options.tta, options.batch_size)
        row = 0
        for image, boxes, _ in pending:
            faces = [
                face_result(image, box, probabilities[row + i], classifier.class_names) for i, box in enumerate(boxes)
            ]
            row += len(boxes)
            result.faces.extend(faces)
            if options.annotate_dir is not None and image.frame is None:  # a video's copy comes at its end
                try:  # a folder that cannot be written costs that copy, not the run's results
                    annotate(image, faces, options.annotate_dir, paths, inputs)
                except (OSError, ValueError) as error:
                    result.problems.append(
                        Problem(
                            image.file,
                            "unwritable",
                            f"annotated copy of '{image.file}' not written: {first_line(error)}",
                        )
                    )
        pending.clear()

    def pending_is_full() -> bool:
        # Bounded by faces (the model's batch) and by the bytes of photos kept for annotation.
        faces = sum(len(boxes) for _, boxes, _ in pending)
        kept_bytes = sum(image.pixels.nbytes for image, _, _ in pending)
        return faces >= options.batch_size or kept_bytes >= PENDING_PHOTO_BYTES

    show_progress = options.progress and len(files) > PROGRESS_MIN_ITEMS
    try:
        with tqdm(total=len(files), unit="file", disable=not show_progress, file=sys.stderr) as bar:
            for path in files:
                result.files_seen += 1
                frames = frames_with_faces = 0
                carried: list[Box] = []  # the boxes of the last frame searched, for --detect-every
                try:
                    for image in read_images(path, options.video_stride):
                        frames += 1
                        if image.frame is not None and (frames - 1) % options.detect_every:
                            boxes, crops = carried, crops_at(to_grey(image.pixels), carried, options)
                        else:
                            boxes, crops = locate_faces(image, options, detector)
                            carried = boxes
                        if not boxes:
                            if image.frame is None:  # a video's frames without a face are no problem
                                result.problems.append(
                                    Problem(image.file, "no_face", f"no face found in '{image.file}'")
                                )
                            continue
                        frames_with_faces += 1
                        # Photos' annotated copies need the pixels later; else keep only the crops.
                        keep = options.annotate_dir is not None and image.frame is None
                        kept = image if keep else Image(image.file, image.frame, EMPTY, image.time)
                        pending.append((kept, boxes, crops))
                        if pending_is_full():
                            classify_pending()
                    if is_video(path) and frames and not frames_with_faces:
                        message = f"no face found in the {frames} sampled frame(s) of '{path}'"
                        result.problems.append(Problem(str(path), "no_face", message))
                except (ValueError, OSError) as error:  # ImageError, an unreadable file or video
                    result.problems.append(Problem(str(path), "unreadable", str(error)))
                bar.update(1)
    except KeyboardInterrupt:
        result.interrupted = True
    if pending:
        classify_pending()
    follow_faces(result.faces, classifier.class_names, options.smoothing)
    if options.annotate_dir is not None and not result.interrupted:
        annotate_videos(result, options, paths, inputs)
    return result


def annotated_video_path(source: Path, directory: Path, roots: list[str | Path]) -> Path:
    """Where a video's annotated copy goes: `DIR/<sub-folders>/<name>.mp4`."""
    return Path(directory) / _relative_parent(source, roots) / f"{source.stem}.mp4"


def annotate_videos(result: Prediction, options: PredictOptions, roots: list[str | Path], inputs) -> None:
    """Write each video's annotated copy (`annotated_video_path`); one that fails is a problem."""
    for file, faces in faces_by_video(result.faces).items():
        source = Path(file)
        target = annotated_video_path(source, options.annotate_dir, roots)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_annotated_video(source, faces, target, options.video_stride or 1, inputs)
        except (OSError, ValueError, RuntimeError) as error:
            message = f"annotated video of '{file}' not written: {first_line(error)}"
            result.problems.append(Problem(file, "unwritable", message))


# Decoded photos kept for their annotated copies until their faces are classified: a few phone
# photos' worth (a 12 MP photo is 36 MB), whatever the count of faces.
PENDING_PHOTO_BYTES = 64 * 2**20
EMPTY = np.zeros((0, 0), dtype=np.uint8)
PROGRESS_MIN_ITEMS = 5  # no progress bar for a handful of files


def locate_faces(image: Image, options: PredictOptions, detector) -> tuple[list[Box], list[np.ndarray]]:
    """The faces' boxes and 48x48 grey crops. Without a detector the image is a face crop already.

    Raises ImageError, naming the file, when the image cannot be searched: Pillow and the
    detectors raise their own types on degenerate pixels, and one image must not stop a run.
    """
    try:
        return _locate_faces(image, options, detector)
    except Exception as error:
        where = f" (frame {image.frame})" if image.frame is not None else ""
        raise ImageError(f"'{image.file}'{where} could not be searched for faces: {first_line(error)}") from None


def _locate_faces(image: Image, options: PredictOptions, detector) -> tuple[list[Box], list[np.ndarray]]:
    grey = to_grey(image.pixels)
    if detector is None:
        return [(0, 0, grey.shape[1], grey.shape[0])], [resized_face(grey, IMAGE_SIZE)]
    max_side = options.detect_size or detector.detect_size
    small, scale = shrunk(image.pixels, max_side)  # one copy for both searches
    boxes = faces_in_copy(small, scale, detector, options.min_face)
    if not boxes and options.find_turned:
        boxes = detect_turned_faces(image.pixels, detector, options.min_face, max_side, copy=(small, scale))
    return boxes, crops_at(grey, boxes, options)


def crops_at(grey: np.ndarray, boxes: list[Box], options: PredictOptions) -> list[np.ndarray]:
    """The 48x48 grey crops of a grey image at `boxes` (found in it, or in an earlier frame)."""
    return [crop_face(grey, box, options.margin, options.square) for box in boxes]


def face_result(image: Image, box: Box, probabilities: np.ndarray, class_names: tuple[str, ...]) -> FaceResult:
    best = int(np.argmax(probabilities))
    return FaceResult(
        image.file,
        image.frame,
        box,
        class_names[best],
        float(probabilities[best]),
        {name: float(p) for name, p in zip(class_names, probabilities)},
        time=image.time,
    )


def faces_in(image: Image, classifier: Classifier, options: PredictOptions, detector) -> list[FaceResult]:
    """Find (unless `detector` is None) and classify the faces of one image."""
    boxes, crops = locate_faces(image, options, detector)
    if not boxes:
        return []
    probabilities = classify_faces(classifier, np.stack(crops), options.tta)
    return [face_result(image, box, row, classifier.class_names) for box, row in zip(boxes, probabilities)]


def annotate(
    image: Image, faces: list[FaceResult], directory: Path, roots: list[str | Path], inputs: Collection[Path] = ()
) -> Path:
    """Write a copy of the image with a box and 'emotion confidence' over each face, under the same
    name and in the same format (a video frame: PNG), never onto one of `inputs` (resolved paths),
    a device or a FIFO (`ferflow.io.file_target`). Raises OSError or ValueError naming the copy."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    from ferflow.io import atomic_path, file_target

    canvas = PILImage.fromarray(to_rgb(image.pixels))
    thickness = max(1, round(max(canvas.size) / 400))
    font = ImageFont.load_default(size=12 * thickness)
    draw = ImageDraw.Draw(canvas)
    for face in faces:
        x, y, w, h = face.box
        draw.rectangle((x, y, x + w, y + h), outline=ANNOTATION_COLOUR, width=thickness)
        draw.text(
            (x, max(0, y - 2)), f"{face.emotion} {face.confidence:.2f}", fill=ANNOTATION_COLOUR, font=font, anchor="lb"
        )
    source = Path(image.file)
    name = source.name if image.frame is None else f"{source.stem}_frame{image.frame:06d}.png"
    target = Path(directory) / _relative_parent(source, roots) / name
    target.parent.mkdir(parents=True, exist_ok=True)
    # the checks of every output: never an input, a device or a FIFO; through a link to its file
    written = file_target(target, inputs, inputs_resolved=True)
    image_format = PILImage.registered_extensions().get(target.suffix.lower(), "PNG")
    with atomic_path(written, suffix=target.suffix) as tmp:
        canvas.save(tmp, format=image_format, **ANNOTATION_SAVE.get(image_format, {}))
    return target


ANNOTATION_COLOUR = (0, 200, 0)
ANNOTATION_SAVE = {"JPEG": {"quality": 95}, "WEBP": {"quality": 95}}


def _relative_parent(source: Path, roots: list[str | Path]) -> Path:
    """Keep the folder structure below the directory given on the command line."""
    for root in roots:
        root = Path(root)
        if root.is_dir():
            try:
                return source.parent.relative_to(root)
            except ValueError:
                continue
    return Path()
