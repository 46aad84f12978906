"""The per-image work of ``data preprocess``, run in worker threads
(:mod:`cxrlab.utils.parallel`): one image in, its pixels (and lung mask) or the
reason it cannot be used out.

It needs only the image reader, the lung-mask reader and the pixel transforms
(PIL, OpenCV, numpy), each of which keeps no state between calls.
"""

from __future__ import annotations

import numpy as np

from cxrlab.data.io import read_image
from cxrlab.data.masks import LungMaskError, read_lung_mask
from cxrlab.errors import ImageReadError
from cxrlab.preprocess.transforms import (
    PreprocessOptions,
    preprocess_lung_mask,
    preprocess_pixels,
)


def preprocess_one(job: tuple[str, PreprocessOptions, str | None]) -> dict:
    """One image: ``{"image": (S, S), "mask": (S, S) uint8 0/255 or None}`` or
    ``{"reason", "detail"}`` when it cannot be used.

    ``mask_path`` None: no lung masks asked for; "": the image has none (rejected).
    """
    path, options, mask_path = job
    try:
        lung_mask = None if mask_path is None else read_lung_mask(mask_path)
        image = read_image(path, draft_px=options.draft_px)
        if lung_mask is None:
            pixels = preprocess_pixels(image.pixels, options)
        else:
            pixels = preprocess_pixels(image.pixels, options, lung_mask)
    except ImageReadError as error:
        return {"reason": error.reason, "detail": error.detail}
    except LungMaskError as error:
        return {"reason": error.reason, "detail": str(error)}
    mask = None
    if lung_mask is not None:
        mask = preprocess_lung_mask(lung_mask, image.pixels.shape, options).astype(np.uint8) * 255
    return {"image": pixels, "mask": mask}
