"""Implementations of the `detrt` subcommands; each returns a dict that the CLI prints."""
from __future__ import annotations

import argparse
import importlib.metadata
import platform


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def version(_: argparse.Namespace) -> dict:
    """Versions of detrt, Python and the libraries it drives."""
    names = ("detrt", "torch", "torchvision", "onnx", "onnxruntime", "tensorrt", "transformers")
    return {"python": platform.python_version(), **{name: _version_of(name) for name in names}}


def inspect(args: argparse.Namespace) -> dict:
    """The configuration and size of a checkpoint, as `detrt.detectors.load` understands it."""
    from detrt.detectors import load

    detector = load(args.checkpoint, arch=args.arch)
    parameters = sum(p.numel() for p in detector.model.parameters())
    return {"checkpoint": args.checkpoint, **detector.config.to_dict(), "parameters": parameters}
