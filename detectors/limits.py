"""Size limits checked before anything large is allocated, each with the way to raise it.

- Decoded image pixels (width x height), checked from the file header before decoding:
  ``DETRT_MAX_IMAGE_PIXELS`` (default 100 million, e.g. 12000 x 8000).
- The network input side (export ``--size``, a model's fixed pre-processing size, an ONNX's
  ``input_size`` metadata): ``DETRT_MAX_INPUT_SIDE`` (default 4096 pixels).
- Checkpoint tensors: at most 2**31 elements each (no DETR-family weight comes near), stored in full.
"""
from __future__ import annotations

import os

from .errors import DetrtError

DEFAULT_MAX_IMAGE_PIXELS = 100_000_000
DEFAULT_MAX_INPUT_SIDE = 4096
MAX_TENSOR_ELEMENTS = 2**31


class LimitError(DetrtError, ValueError):
    """An input larger than a limit; the message names the limit and how to raise it."""


def _from_environment(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    if not text.isdigit() or int(text) < 1:
        raise LimitError(f"{name} must be a positive whole number, got {text!r}")
    return int(text)


def max_image_pixels() -> int:
    """The most pixels an image may decode to ($DETRT_MAX_IMAGE_PIXELS)."""
    return _from_environment("DETRT_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS)


def max_input_side() -> int:
    """The largest network input height or width ($DETRT_MAX_INPUT_SIDE)."""
    return _from_environment("DETRT_MAX_INPUT_SIDE", DEFAULT_MAX_INPUT_SIDE)


def check_image_pixels(width: int, height: int, what: str) -> None:
    """Refuse an image of more pixels than `max_image_pixels` (before it is decoded)."""
    limit = max_image_pixels()
    if width * height > limit:
        raise LimitError(f"{what} is {width}x{height} = {width * height} pixels, more than the limit of {limit}; "
                         "downscale it, or raise the limit with DETRT_MAX_IMAGE_PIXELS=N")


def check_input_size(size: object, what: str) -> tuple[int, int]:
    """`size` as a (height, width) of positive whole numbers within `max_input_side`; else a LimitError
    naming `what` (e.g. "--size", "metadata input_size")."""
    if (not isinstance(size, (list, tuple)) or len(size) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in size)):
        raise LimitError(f"{what} must be two whole numbers [height, width], got {size!r}")
    limit = max_input_side()
    if not all(1 <= v <= limit for v in size):
        raise LimitError(f"{what} {size[0]}x{size[1]} is outside 1..{limit} pixels a side; use a smaller size, or "
                         "raise the limit with DETRT_MAX_INPUT_SIDE=N")
    return int(size[0]), int(size[1])
