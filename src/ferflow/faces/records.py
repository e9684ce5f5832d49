"""What `fer predict` finds: one record per face, and one problem per file that could not be used."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class FaceResult:
    file: str
    frame: int | None  # video frame index; None for images
    box: tuple[int, int, int, int]  # x, y, width, height in the original image
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    time: float | None = None  # seconds from a video's start; None for images
    track: int | None = None  # the same for the same face from frame to frame of a video
    emotion_smoothed: str | None = None  # the top emotion of the track's moving average
    probabilities_smoothed: dict[str, float] | None = None

    def record(self) -> dict:
        x, y, w, h = self.box
        return {
            "file": self.file,
            "frame": self.frame,
            "time": self.time,
            "track": self.track,
            "x": x,
            "y": y,
            "width": w,
            "height": h,
            "emotion": self.emotion,
            "emotion_smoothed": self.emotion_smoothed,
            "confidence": self.confidence,
            "probabilities": self.probabilities,
            "probabilities_smoothed": self.probabilities_smoothed,
        }


@dataclass
class Problem:
    file: str
    kind: str  # "missing", "unreadable", "no_face", "unwritable"
    message: str


VIDEO_COLUMNS = ("frame", "time", "track", "emotion_smoothed")  # empty for photos


def csv_columns(class_names: tuple[str, ...]) -> list[str]:
    """The CSV's (and Parquet's) columns: one row per face, a probability column per class."""
    box = ["x", "y", "width", "height"]
    return ["file", "frame", "time", "track", *box, "emotion", "emotion_smoothed", "confidence", *class_names]
