"""The shipped model and what the tests make of it, once per test process: its ONNX exports, generated
images and small generated shapes datasets (COCO), in a temporary folder removed at exit."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

from detrt.detectors import Detector
from detrt.detectors.data.shapes_dataset import render, write_dataset
from detrt.detectors.zoo import load_zoo
from detrt.export import ExportOptions, export_onnx

ZOO = "shapes-deformable-detr"


@functools.cache
def workdir() -> Path:
    """A temporary folder removed when the test process exits."""
    folder = Path(tempfile.mkdtemp(prefix="detrt-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def shipped() -> Detector:
    """The shipped trained model."""
    return load_zoo(ZOO)


@functools.cache
def shipped_onnx(msda: str = "plugin", batch: int | None = None) -> Path:
    """The shipped model exported to FP32 ONNX with MSDA as `msda`, batch `batch` (None: dynamic)."""
    path = workdir() / f"shipped-{msda}-{batch or 'dynamic'}.onnx"
    export_onnx(shipped(), path, ExportOptions(msda=msda, batch=batch))
    return path


def images(count: int, seed: int = 11) -> list[np.ndarray]:
    """Generated shapes images of the dataset's mixed sizes, as RGB arrays."""
    return [np.asarray(render(seed, index)[0]) for index in range(count)]


@functools.cache
def shapes_dataset(num: int = 8, seed: int = 4242) -> Path:
    """A generated shapes dataset (images/ + annotations.json) of `num` images; returns the JSON path."""
    return write_dataset(workdir() / f"shapes-{seed}-{num}", num, seed, progress=False)
