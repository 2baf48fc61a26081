"""Which TensorRT plugin family an export targets, for the symbolic functions that emit plugin nodes.

``"plugin"``: our MSDA plugin; ``"nvidia"``: TensorRT's built-in plugins only; None (``portable``):
standard ONNX ops. Set for the duration of one export with `plugin_mode`.
"""
from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

from detrt.detectors import InputError

PLUGIN_MODES = ("plugin", "nvidia")

_active: contextvars.ContextVar[str | None] = contextvars.ContextVar("detrt_plugin_mode", default=None)


@contextlib.contextmanager
def plugin_mode(mode: str | None) -> Iterator[None]:
    """Within this block, plugin nodes are emitted for `mode` ("plugin", "nvidia" or None: none)."""
    if mode is not None and mode not in PLUGIN_MODES:
        raise InputError(f"unknown plugin mode {mode!r}; choose one of {PLUGIN_MODES} or None")
    token = _active.set(mode)
    try:
        yield
    finally:
        _active.reset(token)


def active_mode() -> str | None:
    """The plugin mode of the export in progress (None outside `plugin_mode` or for portable)."""
    return _active.get()
