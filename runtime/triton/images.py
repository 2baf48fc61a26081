"""Encoded images in a Triton request: checked (size, format, pixel count) before they are decoded.

The server side of `detrt triton`: each message names what is wrong with the request and how to
send a good one. Decoding is detrt's one image reader (`detrt.detectors.data.images`), as in
`detrt run`, so an image sent to the server gives the very pixels `detrt run` reads from the file
(EXIF orientation and pixel formats included).
"""
from __future__ import annotations

import numpy as np
from detrt.detectors import ImageReadError, LimitError, image_size, read_image

MAX_IMAGE_BYTES = 32 << 20  # 32 MiB of encoded image
MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels: an 8K frame fits, a decompression bomb does not


class ImageRequestError(ValueError):
    """A request's image cannot be used; the message says why and what to send instead."""


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """JPEG/PNG bytes -> an RGB (H, W, 3) uint8 array, refusing empty, oversized and undecodable images."""
    if not data:
        raise ImageRequestError("the image is empty: send the bytes of a JPEG or PNG file")
    if len(data) > max_bytes:
        raise ImageRequestError(f"the image has {len(data)} bytes, over this model's limit of {max_bytes}: send a "
                                "smaller or more compressed image")
    try:
        height, width = image_size(data)
    except ImageReadError:
        raise ImageRequestError(f"the {len(data)} bytes sent are not an image: send the bytes of a JPEG or PNG "
                                "file") from None
    if width * height > max_pixels:
        how_far = "far over" if width * height > 10 * max_pixels else "over"
        raise ImageRequestError(f"the image is {width}x{height} pixels, {how_far} this model's limit of {max_pixels} "
                                "pixels: resize it before sending")
    try:
        return read_image(data)
    except LimitError as error:  # DETRT_MAX_IMAGE_PIXELS set below this model's limit
        raise ImageRequestError(str(error)) from None
    except ImageReadError:
        raise ImageRequestError(f"the {width}x{height} image could not be decoded (corrupt or truncated): send a "
                                "complete JPEG or PNG file") from None
