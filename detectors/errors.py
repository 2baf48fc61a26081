"""The root of every error detrt raises for bad input: `detrt` prints it as one line and exits 2.

Every layer (detectors, export, calibrate, runtime) may import it; each keeps its own subclasses.
"""
from __future__ import annotations


class DetrtError(Exception):
    """A problem with what the user gave detrt (a file, a model, an argument); the message names the fix."""
