"""The video tracker (`ferflow.faces.video.assign_tracks`: IoU with each track's predicted box)
against ByteTrack, on the same clips and the same MTCNN boxes.

    pip install supervision==0.31.2 && pip install --no-deps trackers==2.6.1  # ByteTrack
    python benchmarks/tracking.py --out benchmarks/results/tracking_cpu.json

The clips are the tests' synthetic clip (two real faces, 640x480, 10 fps, crossing) as it is,
three times faster (crossing three times, bouncing off the sides) and with one face hidden for
0.6 s. Each box's true face is the nearest of the clip's known positions. Per tracker and clip:
the tracks made, the tracks holding both faces (swaps), and for each face the share of its
boxes in its main track (coverage).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from conftest import clip_positions, write_two_face_clip  # noqa: E402

from ferflow.faces.predict import PredictOptions, load_classifier, predict_paths  # noqa: E402
from ferflow.faces.video import assign_tracks  # noqa: E402

CLIPS = {
    "crossing once": {"speed": 1.0},
    "three times faster": {"speed": 3.0},
    "a face hidden 0.6 s": {"speed": 1.0, "hidden": (3.0, 3.6)},
}


def true_face(face, speed: float) -> str:
    centre = np.array([face.box[0] + face.box[2] / 2, face.box[1] + face.box[3] / 2])
    corners = clip_positions(face.time, speed)
    return min(corners, key=lambda name: np.linalg.norm(centre - (np.array(corners[name]) + 60)))


def bytetrack_ids(faces, fps: float) -> list[int]:
    import supervision as sv
    from trackers import ByteTrackTracker

    tracker = ByteTrackTracker(frame_rate=fps, lost_track_buffer=round(fps), minimum_consecutive_frames=1)
    ids = {}
    for frame in sorted({face.frame for face in faces}):
        in_frame = [face for face in faces if face.frame == frame]
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in (face.box for face in in_frame)], dtype=float)
        detections = sv.Detections(xyxy=xyxy, confidence=np.ones(len(in_frame)), class_id=np.zeros(len(in_frame), int))
        tracked = tracker.update(detections)
        for box, track in zip(tracked.xyxy, tracked.tracker_id):  # matched back by box
            owner = min(in_frame, key=lambda face: np.abs(np.array(face.box[:2]) - box[:2]).sum())
            ids[id(owner)] = int(track)
    return [ids.get(id(face), -1) for face in faces]


def scores(truth: list[str], tracks: list[int]) -> dict:
    per_track = {track: {who for who, t in zip(truth, tracks) if t == track} for track in set(tracks) if track >= 0}
    coverage = {}
    for who in sorted(set(truth)):
        mine = Counter(t for w, t in zip(truth, tracks) if w == who)
        coverage[who] = round(max(mine.values()) / sum(mine.values()), 3)
    return {
        "tracks": len(per_track),
        "swaps": sum(len(faces) > 1 for faces in per_track.values()),
        "coverage": coverage,
        "untracked_boxes": sum(t < 0 for t in tracks),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    classifier = load_classifier()
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, settings in CLIPS.items():
            clip = write_two_face_clip(Path(scratch) / f"{len(results)}.mp4", **settings)
            faces = predict_paths([clip], classifier, PredictOptions(video_stride=1)).faces
            truth = [true_face(face, settings["speed"]) for face in faces]
            assign_tracks(faces)
            results[name] = {
                "boxes": len(faces),
                "ferflow": scores(truth, [face.track for face in faces]),
                "bytetrack": scores(truth, bytetrack_ids(faces, fps=10)),
            }
    print(json.dumps(results, indent=1))
    if args.out:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
