"""The root of every error detrt raises for bad input: `detrt` prints it as one line and exits 2; any
other exception is a bug and keeps its traceback.

Every layer (detectors, export, calibrate, runtime) may import it; each keeps its own subclasses.
`InputError` and `MissingFileError` are for the places with no more specific class: they are also a
`ValueError` / `FileNotFoundError`, so callers that catch those still do.
"""
from __future__ import annotations


class DetrtError(Exception):
    """A problem with what the user gave detrt (a file, a model, an argument); the message names the fix."""


class InputError(DetrtError, ValueError):
    """A value, option or file content that detrt cannot use."""


class MissingFileError(DetrtError, FileNotFoundError):
    """A file the user named does not exist."""
