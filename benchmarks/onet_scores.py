"""Where MTCNN loses the hard faces: the O-Net score of the best candidate at each face, beside
the best O-Net score in face-free photos.

    python benchmarks/onet_scores.py --faces /path/to/fer2013/train --count 240 --size 96 \
        --out benchmarks/results/onet_scores_train_cpu.csv

Each face of hard_faces.py's kinds is placed alone in its photo (as `--alone` places it) and
searched as `fer predict` searches (the photo shrunk to 320 px), with P-Net and R-Net at the
shipped thresholds and O-Net's left open: a face that keeps no candidate after R-Net is lost
before O-Net; one whose best candidate (IoU >= 0.3) scores below O-Net's threshold is lost by
O-Net. The face-free photos' best scores say how low O-Net could go before clutter passes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from detectors import FACE_FREE
from grids import draw, grid, iou, load_faces, write_csv
from hard_faces import KINDS, MORE_FACE_FREE

from ferflow.faces.detectors import shrunk
from ferflow.faces.mtcnn import MtcnnDetector
from ferflow.faces.photo import to_rgb

LEVELS = (0.97, 0.5, 0.1, 0.01)  # O-Net thresholds reported: fer predict's turned copies', the shipped, lower
MAX_SIDE = 320


def best_scores(detector: MtcnnDetector, image: np.ndarray) -> tuple[np.ndarray, float]:
    """Every candidate box that survives R-Net (x, y, w, h in `image`'s pixels) and its O-Net score."""
    small, scale = shrunk(image, MAX_SIDE)
    found = detector.find(to_rgb(small), thresholds=(*detector.thresholds[:2], 0.0))
    boxes = np.column_stack([found[:, :2], found[:, 2:4] - found[:, :2]]) / scale
    return boxes, found[:, 4]


def face_score(detector: MtcnnDetector, face: np.ndarray, size: int) -> float:
    """The best O-Net score among the candidates at the face, or -1 if none survives R-Net."""
    image, placed = grid([face], size)
    boxes, scores = best_scores(detector, image)
    at_face = [score for box, score in zip(boxes, scores) if iou(tuple(box), placed[0]) >= 0.3]
    return max(at_face, default=-1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", required=True, help="a Kaggle-layout folder: <emotion>/*.jpg")
    parser.add_argument("--count", type=int, default=240, help="faces drawn (seed 0), each shown in every kind")
    parser.add_argument("--size", type=int, default=96, help="the faces' size in their photos, px")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    faces, _, _ = load_faces(args.faces)
    chosen = draw(min(args.count, len(faces)), 0, len(faces))
    detector = MtcnnDetector()
    rows = []
    for kind, change in KINDS.items():
        scores = np.array([face_score(detector, change(faces[i]), args.size) for i in chosen])
        row = {"kind": kind, "no_candidate_after_rnet": round(float(np.mean(scores < 0)), 3)}
        row.update({f"onet_at_least_{level}": round(float(np.mean(scores >= level)), 3) for level in LEVELS})
        rows.append(row | {"faces": len(chosen)})
        print(rows[-1], flush=True)
    from skimage import data as skimage_data

    photos = [getattr(skimage_data, name)() for name in FACE_FREE + MORE_FACE_FREE]
    photos += [np.rot90(photo) for photo in photos]  # and each on its side
    free = np.array([max(best_scores(detector, photo)[1], default=-1.0) for photo in photos])
    row = {"kind": f"face-free photos ({len(photos)}): best candidate anywhere"}
    row["no_candidate_after_rnet"] = round(float(np.mean(free < 0)), 3)
    row.update({f"onet_at_least_{level}": round(float(np.mean(free >= level)), 3) for level in LEVELS})
    rows.append(row | {"faces": 0})
    print(rows[-1])
    if args.out:
        about = (
            f"onet_scores.py: {Path(args.faces).name}/, {len(chosen)} faces (seed 0) alone at {args.size} px, "
            f"mtcnn at {MAX_SIDE} px, P-Net/R-Net {detector.thresholds[:2]}; share of faces whose best candidate "
            "reaches each O-Net score"
        )
        write_csv(args.out, about, rows)


if __name__ == "__main__":
    main()
