"""Frames per second of `fer predict` on a 640x480 clip: the synthetic two-face clip of the tests
(10 s at 10 fps, tracked and smoothed), detection on every sampled frame, at strides 1 and 5,
with and without the annotated video, and at stride 1 with detection every 5 frames. Run it
alone on the machine.

    python benchmarks/video.py --out benchmarks/results/video_cpu.json

The rate is frames read per second of wall time, in one process, after the models are loaded;
each figure is the median of --repeats runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import write_two_face_clip  # noqa: E402

from ferflow.faces.detectors import face_detector  # noqa: E402
from ferflow.faces.predict import PredictOptions, load_classifier, predict_paths  # noqa: E402


def frames_per_second(clip: Path, stride: int, annotate: Path | None, repeats: int, detect_every: int = 1) -> dict:
    classifier = load_classifier()
    face_detector("mtcnn")  # loaded once, as in a run
    seconds, faces = [], 0
    for _ in range(repeats):
        start = time.perf_counter()
        options = PredictOptions(video_stride=stride, annotate_dir=annotate, detect_every=detect_every)
        result = predict_paths([clip], classifier, options)
        seconds.append(time.perf_counter() - start)
        faces = len(result.faces)
    frames = 100  # the clip's; every one of them is decoded, the sampled ones searched
    median = statistics.median(seconds)
    return {
        "stride": stride,
        "detect_every": detect_every,
        "annotated_video": annotate is not None,
        "seconds": round(median, 2),
        "frames_read_per_s": round(frames / median, 1),
        "sampled_frames_per_s": round(frames / stride / median, 1),
        "faces": faces,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, help="write the figures here as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        clip = write_two_face_clip(Path(scratch) / "clip.mp4")
        annotated = Path(scratch) / "annotated"
        runs = [
            frames_per_second(clip, stride, folder, args.repeats) for stride in (1, 5) for folder in (None, annotated)
        ]
        runs.append(frames_per_second(clip, 1, None, args.repeats, detect_every=5))
    figures = {
        "machine": f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores",
        "python": platform.python_version(),
        "clip": "640x480, 10 s at 10 fps, two faces of 120 px (tests/conftest.py: write_two_face_clip)",
        "runs": runs,
    }
    print(json.dumps(figures, indent=1))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=1) + "\n")


if __name__ == "__main__":
    main()
