"""Encoded images in a Triton request: checked (size, format, pixel count) before they are decoded.

The server side of `detrt triton`: each message names what is wrong with the request and how to
send a good one. Decoding is OpenCV's, as `detrt run` reads image files, so a PNG sent to the
server gives the very pixels `detrt run` sees.
"""
from __future__ import annotations

import io

import cv2
import numpy as np

MAX_IMAGE_BYTES = 32 << 20  # 32 MiB of encoded image
MAX_IMAGE_PIXELS = 40_000_000  # 40 megapixels: an 8K frame fits, a decompression bomb does not


class ImageRequestError(ValueError):
    """A request's image cannot be used; the message says why and what to send instead."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as header:
            return header.size
    except Image.DecompressionBombError:
        raise ImageRequestError(f"the image is over {2 * Image.MAX_IMAGE_PIXELS} pixels, far over this model's "
                                "limit: resize it before sending") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise ImageRequestError(f"the {len(data)} bytes sent are not an image: send the bytes of a JPEG or PNG "
                                "file") from None


def decode_image(data: bytes, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """JPEG/PNG bytes -> an RGB (H, W, 3) uint8 array, refusing empty, oversized and undecodable images."""
    if not data:
        raise ImageRequestError("the image is empty: send the bytes of a JPEG or PNG file")
    if len(data) > max_bytes:
        raise ImageRequestError(f"the image has {len(data)} bytes, over this model's limit of {max_bytes}: send a "
                                "smaller or more compressed image")
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageRequestError(f"the image is {width}x{height} pixels, over this model's limit of {max_pixels} "
                                "pixels: resize it before sending")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise ImageRequestError(f"the {width}x{height} image could not be decoded (corrupt or truncated): send a "
                                "complete JPEG or PNG file")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
