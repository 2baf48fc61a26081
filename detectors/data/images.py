"""The one image reader of every command: size checked from the header before decoding, EXIF
orientation applied, every pixel format turned into (H, W, 3) uint8 RGB.

Grayscale is repeated into three channels, alpha is dropped, palettes are expanded, CMYK is converted,
and 16-bit or 32-bit integer images are scaled from 0..65535 to 0..255 (float images are clipped to
0..255). So a phone photo, a PNG with transparency or a 16-bit scan gives the same pixels in `run`,
`eval`, `compare`, `calibrate`, `convert` and a `detrt triton` server (which reads the bytes of a request).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import DetrtError
from ..limits import check_image_pixels

Image.MAX_IMAGE_PIXELS = None  # detrt bounds pixels itself (limits.max_image_pixels), before decoding
_EXIF_ORIENTATION = 0x0112
_TRANSPOSED = (5, 6, 7, 8)  # orientations that swap width and height
_WIDE_INTEGER_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")


Source = str | Path | bytes  # a file, or the bytes of an encoded one


class ImageReadError(DetrtError, ValueError):
    """An image that cannot be decoded; the message names the file."""


def _open(source: Source) -> Image.Image:
    return Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)


def _name(source: Source) -> str:
    return f"the {len(source)}-byte image" if isinstance(source, bytes) else f"image {source}"


def _reason(error: BaseException, source: Source) -> str:
    """PIL's message without the path it repeats."""
    message = str(error)
    if not isinstance(source, bytes):
        message = message.replace(f" '{source}'", "").replace(f" {source}", "")
    return message or type(error).__name__


def _to_rgb(image: Image.Image) -> np.ndarray:
    if image.mode in _WIDE_INTEGER_MODES:
        pixels = np.asarray(image, dtype=np.float64)
        pixels = pixels / 257.0 if pixels.max(initial=0) > 255 else pixels
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.rint(np.asarray(image)), 0, 255).astype(np.uint8))
    return np.array(image.convert("RGB"))  # a writable copy


def image_size(source: Source) -> tuple[int, int]:
    """(height, width) of the image `source` as `read_image` returns it (EXIF orientation applied),
    from its header only."""
    try:
        with _open(source) as image:
            width, height = image.size
            try:
                orientation = image.getexif().get(_EXIF_ORIENTATION)
            except (OSError, SyntaxError, ValueError):  # a damaged file past its header: decoding says so
                orientation = None
            if orientation in _TRANSPOSED:
                width, height = height, width
    except (UnidentifiedImageError, OSError) as error:
        raise ImageReadError(f"cannot decode {_name(source)} ({_reason(error, source)})") from None
    return height, width


def read_image(source: Source) -> np.ndarray:
    """The image `source` (a file, or an encoded file's bytes) as (H, W, 3) uint8 RGB, upright; a LimitError
    when it has more pixels than DETRT_MAX_IMAGE_PIXELS allows (checked before decoding), an ImageReadError
    when it cannot be decoded."""
    try:
        with _open(source) as image:
            check_image_pixels(*image.size, _name(source))
            return _to_rgb(ImageOps.exif_transpose(image))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        if isinstance(error, DetrtError):
            raise
        raise ImageReadError(f"cannot decode {_name(source)} ({_reason(error, source)})") from None
