"""The converted dlib network against dlib itself: face descriptors of the same images.

    pip install face_recognition_models==0.3.0 dlib-bin
    python benchmarks/dlib_parity.py --out benchmarks/results/dlib_parity.json

`ferflow.model.face_resnet` rebuilds dlib's face-recognition ResNet in Keras from the weights file
(each convolution's affine layer folded in). Here the rebuilt network, with dlib's final 256x128
layer added, computes the 128-number descriptors of 150x150 RGB images, and dlib's
`face_recognition_model_v1.compute_face_descriptor` computes them from the same file. The faces are
the embedded sample's, enlarged to 150 px.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ferflow.runtime import environment_info, start_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=Path("data/sample/train"))
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    start_backend()
    import dlib
    import keras
    import numpy as np
    from PIL import Image

    from ferflow.io import write_json
    from ferflow.model import face_resnet

    path = face_resnet.dlib_weights_path()
    inputs = keras.Input((150, 150, 3))
    normalised = keras.layers.Rescaling(1 / 256, offset=[-m / 256 for m in face_resnet.DLIB_RGB_MEANS])(inputs)
    convolutions: list = []
    features = keras.Model(inputs, face_resnet.dlib_features(normalised, convolutions))
    face_resnet.load_dlib_weights(convolutions, path)
    _, fc = face_resnet.read_dlib_weights(path)
    reference = dlib.face_recognition_model_v1(str(path))

    files = sorted(p for p in args.faces.rglob("*") if p.suffix.lower() in {".jpg", ".png"})[: args.count]
    images = np.stack([np.asarray(Image.open(f).convert("RGB").resize((150, 150), Image.BILINEAR)) for f in files])
    ours = features.predict(images.astype("float32"), verbose=0) @ fc
    theirs = np.stack([np.array(reference.compute_face_descriptor(image)) for image in images])
    result = {
        "environment": {k: str(v) for k, v in environment_info().items()},
        "dlib": dlib.__version__,
        "faces": len(files),
        "max_abs_difference": float(np.abs(ours - theirs).max()),
        "mean_descriptor_norm": float(np.linalg.norm(theirs, axis=1).mean()),
    }
    print(
        f"{len(files)} faces: largest difference {result['max_abs_difference']:.2e} "
        f"(descriptor norms about {result['mean_descriptor_norm']:.2f})"
    )
    if args.out:
        write_json(args.out, result)


if __name__ == "__main__":
    main()
