"""Errors of the runtime that a user can fix; each message names the problem and the fix."""
from __future__ import annotations

from detrt.detectors import DetrtError


class DetrtRuntimeError(DetrtError, RuntimeError):
    """Base of the runtime's user-facing errors (the CLI prints them as one line, exit 2)."""


class BackendUnavailableError(DetrtRuntimeError):
    """The backend asked for cannot run here (package, GPU or provider missing)."""


class EngineMismatchError(DetrtRuntimeError):
    """A TensorRT engine was built for another TensorRT version or GPU, or has no usable sidecar."""


class PluginLibraryError(DetrtRuntimeError):
    """The TensorRT plugin library could not be found or loaded."""


class EngineBuildError(DetrtRuntimeError):
    """TensorRT could not parse the ONNX or build the engine."""


class SourceError(DetrtRuntimeError):
    """A frame source (image, directory, video, camera) cannot deliver frames."""
