"""Shared, once-per-process artefacts of the precision tests: the shipped model, its FP32 export and a
small generated shapes dataset (COCO), so that several test modules do not export it again."""
from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from detrt.detectors import Detector
from detrt.detectors.data.shapes_dataset import write_dataset
from detrt.detectors.zoo import load_zoo
from detrt.export import ExportOptions, export_onnx

ZOO = "shapes-deformable-detr"


@functools.cache
def workdir() -> Path:
    """A temporary folder removed when the test process exits."""
    folder = Path(tempfile.mkdtemp(prefix="detrt-precision-tests-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


@functools.cache
def shipped() -> Detector:
    """The shipped trained model."""
    return load_zoo(ZOO)


@functools.cache
def shipped_onnx(mode: str = "plugin") -> Path:
    """The shipped model exported to FP32 ONNX (dynamic batch) with MSDA as `mode`."""
    path = workdir() / f"shipped-{mode}.onnx"
    export_onnx(shipped(), path, ExportOptions(msda=mode, batch=None))
    return path


@functools.cache
def shapes_dataset(num: int = 8, seed: int = 4242) -> Path:
    """A generated shapes dataset (images/ + annotations.json) of `num` images; returns the JSON path."""
    return write_dataset(workdir() / f"shapes-{seed}-{num}", num, seed, progress=False)
