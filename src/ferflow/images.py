"""Image decoding shared by training (ferflow.data.folders) and the photo tool (ferflow.faces.predict), so
that a file of any bit depth becomes the same grey pixels in both."""

from __future__ import annotations

import numpy as np
from PIL import Image

SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")  # PIL's modes for 16- and 32-bit integer pixels


def to_8bit_grey(image: Image.Image) -> Image.Image:
    """Grey 8-bit, whatever the bit depth. PIL's convert("L") clips 16-bit values at 255 (an
    almost white face); they are scaled by 1/256 instead, as OpenCV reads them."""
    if image.mode in SIXTEEN_BIT_MODES:
        wide = np.asarray(image, dtype=np.uint32)
        return Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), mode="L")
    return image if image.mode == "L" else image.convert("L")
