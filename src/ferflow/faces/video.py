"""Faces followed through a video: a track id for the same face from frame to frame, its emotion
smoothed over time, a timeline chart and an annotated copy of the clip.

Tracking associates each sampled frame's boxes with the tracks of the frames before by their
overlap (IoU) with where each track is predicted to be, from its velocity. A face hidden or
lost for longer than `MAX_GAP_S` gets a new track when it comes back. Smoothing is an
exponential moving average of each track's probabilities with a time constant in seconds, so
that it means the same at any frame rate and stride.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ferflow.faces.photo import iou
from ferflow.faces.records import FaceResult

MAX_GAP_S = 1.0  # a track unseen for longer ends; the face gets a new one when it comes back
MIN_IOU = 0.2  # below this overlap with a track's predicted box, a face starts a new track
DEFAULT_SMOOTHING_S = 0.5  # the time constant of the moving average (63% of a change within it)
# The matplotlib colours that the reports' figures use, one per emotion in class order.
EMOTION_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2")


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, width, height, as floats
    velocity: np.ndarray  # of the box's corner, pixels a second
    time: float  # when it was last seen


def assign_tracks(faces: list[FaceResult], max_gap_s: float = MAX_GAP_S, min_iou: float = MIN_IOU) -> None:
    """Set `track` (1, 2, ...) on the faces of one video, given in frame order with their `time`."""
    tracks: list[Track] = []
    next_id = 1
    by_frame = group_by(faces, lambda face: face.frame)
    for frame in sorted(by_frame):
        now = by_frame[frame][0].time
        tracks = [track for track in tracks if now - track.time <= max_gap_s]
        predicted = [track.box + np.r_[track.velocity * (now - track.time), 0, 0] for track in tracks]
        boxes = [np.asarray(face.box, dtype=float) for face in by_frame[frame]]
        pairs = sorted(((iou(p, b), t, f) for t, p in enumerate(predicted) for f, b in enumerate(boxes)), reverse=True)
        used_tracks, used_faces = set(), set()
        for overlap, t, f in pairs:  # greedy, best overlap first: a few faces a frame
            if overlap < min_iou or t in used_tracks or f in used_faces:
                continue
            used_tracks.add(t)
            used_faces.add(f)
            track = tracks[t]
            elapsed = now - track.time
            if elapsed > 0:
                step = (boxes[f][:2] - track.box[:2]) / elapsed
                track.velocity = step if not track.velocity.any() else 0.5 * track.velocity + 0.5 * step
            track.box, track.time = boxes[f], now
            by_frame[frame][f].track = track.id
        for f, box in enumerate(boxes):
            if f not in used_faces:
                tracks.append(Track(next_id, box, np.zeros(2), now))
                by_frame[frame][f].track = next_id
                next_id += 1


def smooth_tracks(faces: list[FaceResult], class_names: tuple[str, ...], smoothing_s: float) -> None:
    """Set `probabilities_smoothed` and `emotion_smoothed` on tracked faces: per track, in time
    order, an exponential moving average with time constant `smoothing_s` (0: none)."""
    for track_faces in group_by_track(faces).values():
        state, last = None, None
        for face in sorted(track_faces, key=lambda f: f.time):
            current = np.array([face.probabilities[name] for name in class_names])
            if state is None or smoothing_s <= 0:
                state = current
            else:
                weight = 1.0 - math.exp(-(face.time - last) / smoothing_s)
                state = state + weight * (current - state)
            last = face.time
            face.probabilities_smoothed = {name: float(p) for name, p in zip(class_names, state)}
            face.emotion_smoothed = class_names[int(np.argmax(state))]


def follow_faces(faces: list[FaceResult], class_names: tuple[str, ...], smoothing_s: float) -> None:
    """Track and smooth the faces of every video among `faces` (photos are left as they are)."""
    for video_faces in faces_by_video(faces).values():
        assign_tracks(video_faces)
        smooth_tracks(video_faces, class_names, smoothing_s)


def group_by(faces: list[FaceResult], key: Callable[[FaceResult], object]) -> dict:
    """The faces under each value of `key`, in their order."""
    groups: dict = defaultdict(list)
    for face in faces:
        groups[key(face)].append(face)
    return dict(groups)


def faces_by_video(faces: list[FaceResult]) -> dict[str, list[FaceResult]]:
    return group_by([face for face in faces if face.frame is not None], lambda face: face.file)


def group_by_track(faces: list[FaceResult]) -> dict[int, list[FaceResult]]:
    return group_by(faces, lambda face: face.track)


def hex_to_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def write_annotated_video(
    source: Path, faces: list[FaceResult], target: Path, stride: int, inputs: Collection[Path] = ()
) -> Path:
    """Write `target` (.mp4): the sampled frames of `source` at its frame rate / `stride`, each face
    boxed with its track id and smoothed label. Never onto an input (`ferflow.io.file_target`);
    written to a temporary name, then renamed. Raises OSError or ValueError naming the copy."""
    from ferflow.faces.photo import read_video, require_opencv, video_frame_rate
    from ferflow.io import atomic_path, file_target

    cv2 = require_opencv("writing videos")
    written = file_target(target, inputs, inputs_resolved=True)
    by_frame = group_by(faces, lambda face: face.frame)
    fps = video_frame_rate(source) / stride
    writer = None
    with atomic_path(written, suffix=".mp4") as tmp:
        try:
            for image in read_video(source, stride):
                frame = np.ascontiguousarray(image.pixels[:, :, ::-1])  # back to OpenCV's BGR
                if writer is None:
                    height, width = frame.shape[:2]
                    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
                    if not writer.isOpened():
                        raise OSError(f"'{target}' cannot be written as an MP4 video")
                draw_faces(cv2, frame, by_frame.get(image.frame, []))
                writer.write(frame)
        finally:
            if writer is not None:
                writer.release()
    return target


def draw_faces(cv2, frame: np.ndarray, faces: list[FaceResult]) -> None:
    from ferflow import CLASS_NAMES

    thickness = max(1, round(max(frame.shape[:2]) / 400))
    for face in faces:
        x, y, w, h = face.box
        label = face.emotion_smoothed or face.emotion
        index = CLASS_NAMES.index(label) if label in CLASS_NAMES else 0
        red, green, blue = hex_to_rgb(EMOTION_COLOURS[index])
        colour = (blue, green, red)
        cv2.rectangle(frame, (x, y), (x + w, y + h), colour, 2 * thickness)
        cv2.putText(
            frame,
            f"{face.track}: {label}",
            (x, max(12, y - 6)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5 * thickness,
            colour,
            thickness,
        )


def timeline_image(faces: list[FaceResult], class_names: tuple[str, ...], width: int = 900):
    """A Pillow image: one row per track of each video, the smoothed probability of each emotion
    over time (seconds), in the reports' colours, with a legend on top."""
    from PIL import Image as PILImage
    from PIL import ImageDraw, ImageFont

    rows = [
        (file, track, sorted(group, key=lambda f: f.time))
        for file, video_faces in faces_by_video(faces).items()
        for track, group in sorted(group_by_track(video_faces).items())
    ]
    if not rows:
        raise ValueError("no video face to chart; --timeline needs a video with a face")
    end = max(face.time for face in faces if face.time is not None) or 1.0
    left, right, top, row_height, gap, bottom = 60, 20, 40, 150, 40, 36
    height = top + len(rows) * (row_height + gap) + bottom
    image = PILImage.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=13)
    for i, name in enumerate(class_names):  # the legend
        x = left + i * 110
        draw.line((x, 20, x + 24, 20), fill=EMOTION_COLOURS[i % len(EMOTION_COLOURS)], width=3)
        draw.text((x + 30, 20), name, fill="black", font=font, anchor="lm")
    plot_width = width - left - right
    for r, (file, track, track_faces) in enumerate(rows):
        y0 = top + gap + r * (row_height + gap)
        draw.text((left, y0 - 8), f"{Path(file).name}, track {track}", fill="black", font=font, anchor="lb")
        draw.rectangle((left, y0, left + plot_width, y0 + row_height), outline="#888888")
        step = next(s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600) if end / s <= 12)
        for tick in range(0, int(end) + 1, step):  # at most a dozen ticks, labelled in seconds
            x = left + plot_width * tick / end
            draw.line((x, y0 + row_height, x, y0 + row_height + 4), fill="#888888")
            draw.text((x, y0 + row_height + 6), f"{tick}", fill="black", font=font, anchor="mt")
        for value in (0.0, 0.5, 1.0):
            y = y0 + row_height * (1 - value)
            draw.text((left - 6, y), f"{value:g}", fill="black", font=font, anchor="rm")
        for i, name in enumerate(class_names):
            points = [
                (left + plot_width * face.time / end, y0 + row_height * (1 - face.probabilities_smoothed[name]))
                for face in track_faces
            ]
            if len(points) > 1:
                draw.line(points, fill=EMOTION_COLOURS[i % len(EMOTION_COLOURS)], width=2)
    draw.text((left + plot_width / 2, height - 4), "time (s)", fill="black", font=font, anchor="mb")
    return image


def write_timeline(faces: list[FaceResult], class_names: tuple[str, ...], target: Path) -> None:
    """Write the timeline chart as a PNG, to a temporary name first (`ferflow.io.atomic_path`)."""
    from ferflow.io import atomic_path

    image = timeline_image(faces, class_names)
    with atomic_path(target, suffix=".png") as tmp:
        image.save(tmp, format="PNG")
