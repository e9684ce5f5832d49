"""Face detectors compared on photo-like grids of FER-2013 faces and on two real portraits.

    python benchmarks/detectors.py --faces /path/to/fer2013/test --seeds 0 1 2 \
        --sizes 48 96 160 320 --out benchmarks/results/detectors_cpu.csv

A grid (see grids.py): 24 faces drawn (by seed) from --faces, each upscaled to
`size` px in a grey cell; a placed face is found when a box overlaps it with IoU >= 0.3, and
every other box is a false positive. Also: faces found in scikit-image's astronaut and
cameraman and matplotlib's Grace Hopper portraits (one face each), boxes found in seven of
scikit-image's photos without a face (false faces), and detection latency on a 640x480 photo
(median of 20). For MTCNN, --thresholds and --scale-factors sweep its settings (one row each,
times --max-sides); choose them with --faces dataset.npz:val, never on test/.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import cv2
import numpy as np
from grids import FACES, draw, grid, load_faces, match, write_csv
from matplotlib import cbook
from PIL import Image as PILImage
from skimage import data as skimage_data

from ferflow.faces.detectors import DETECTORS, detect_faces, face_detector
from ferflow.faces.mtcnn import load_second_look

FACE_FREE = ("coffee", "chelsea", "rocket", "cat", "brick", "immunohistochemistry", "hubble_deep_field")


def measure(
    detector,
    faces: np.ndarray,
    seeds: list[int],
    sizes: list[int],
    max_side: int,
    portraits: dict[str, np.ndarray],
    face_free: list[np.ndarray],
    photo_640: np.ndarray,
) -> dict:
    found = false = total = 0
    per_size = {}
    for size in sizes:
        size_found = 0
        for seed in seeds:
            chosen = draw(FACES, seed, len(faces))
            image, placed = grid([faces[i] for i in chosen], size)
            matched, miss = match(detect_faces(image, detector, min_size=24, max_side=max_side), placed)
            hit = sum(box is not None for box in matched)
            found, false, total, size_found = found + hit, false + miss, total + len(placed), size_found + hit
        per_size[size] = size_found / (len(seeds) * FACES)
    detect_faces(photo_640, detector, max_side=max_side)  # warm-up
    times = []
    for _ in range(20):
        start = time.perf_counter()
        detect_faces(photo_640, detector, max_side=max_side)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "faces_placed": total,
        "recall": round(found / total, 3),
        **{f"recall_{size}px": round(value, 3) for size, value in per_size.items()},
        "false_positives_per_24_faces": round(false / total * FACES, 2),
        **{f"faces_in_{p}": len(detect_faces(img, detector, max_side=max_side)) for p, img in portraits.items()},
        "false_faces_in_face_free_photos": sum(
            len(detect_faces(img, detector, max_side=max_side)) for img in face_free
        ),
        "ms_per_640x480_photo": round(statistics.median(times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", required=True, help="a folder of <emotion>/*.jpg faces or dataset.npz:val")
    parser.add_argument(
        "--max-sides",
        type=int,
        nargs="+",
        default=None,
        help="detect on a copy at most this large (each value is a row; default: the detector's)",
    )
    parser.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    parser.add_argument(
        "--scale-factors",
        type=float,
        nargs="+",
        default=None,
        help="mtcnn only: its image pyramid's step (each value is a row; default: ferflow's)",
    )
    parser.add_argument(
        "--thresholds",
        nargs="+",
        default=None,
        help="mtcnn only: P/R/O-Net thresholds as 0.6/0.7/0.8 (each value is a row; default: ferflow's)",
    )
    parser.add_argument(
        "--second-look",
        type=float,
        nargs="+",
        default=None,
        metavar="THRESHOLD",
        help="mtcnn only: its second look at the candidates O-Net doubts, kept at this score (each value is a row)",
    )
    parser.add_argument(
        "--second-look-file", type=Path, metavar="ONNX", help="the second look's file (default: the package's)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sizes", type=int, nargs="+", default=[48, 96, 160, 320])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    faces, _, _ = load_faces(args.faces)
    portraits = {
        "astronaut": skimage_data.astronaut(),  # RGB, as the photo tool decodes photos
        "grace_hopper": np.asarray(
            PILImage.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB")
        ),
    }
    photo_640 = cv2.resize(portraits["astronaut"], (640, 480), interpolation=cv2.INTER_AREA)
    portraits["cameraman"] = skimage_data.camera()
    face_free = [getattr(skimage_data, name)() for name in FACE_FREE]
    rows = []
    for name in args.detectors:
        detector = face_detector(name)
        if name == "mtcnn":
            settings = itertools.product(
                [tuple(float(v) for v in t.split("/")) for t in args.thresholds]
                if args.thresholds
                else [detector.thresholds],
                args.scale_factors or [detector.scale_factor],
                args.second_look or [None],
            )
        else:
            settings = [(None, None, None)]
        for (thresholds, scale_factor, look), max_side in itertools.product(
            list(settings), args.max_sides or [detector.detect_size]
        ):
            if name == "mtcnn":
                detector.thresholds, detector.scale_factor = thresholds, scale_factor
                detector.second_look = None if look is None else load_second_look(look, args.second_look_file)
            rows.append(
                {
                    "detector": name,
                    "max_side": max_side,
                    "thresholds": "/".join(map(str, thresholds)) if thresholds else "",
                    "scale_factor": scale_factor or "",
                    "second_look": "" if look is None else look,
                    **measure(detector, faces, args.seeds, args.sizes, max_side, portraits, face_free, photo_640),
                }
            )
            print(rows[-1], flush=True)
    if args.out:
        write_csv(args.out, f"{Path(__file__).name}: {args.faces}, seeds {args.seeds}, sizes {args.sizes} px", rows)


if __name__ == "__main__":
    main()
