"""`detrt demo`: the shipped model exported, run with the best backend here, checked against PyTorch.

On a machine with TensorRT and a GPU the plugin graph (detrt's TensorRT plugin where its library is
found, else NVIDIA's built-in MSDA plugin) is built into an engine. Elsewhere the portable graph runs
in ONNX Runtime on the CPU: it is the faster of the two graphs there (the plugin graph's MSDA nodes
run through a Python custom-op bridge) and it runs in any ONNX runtime.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from detrt.detectors import InputError, write_json_atomic

from ..accuracy.agreement import compare_detections
from ..errors import DetrtRuntimeError
from ..model import Model, open_model

ZOO_NAME = "shapes-deformable-detr"
DEMO_SEED = 2026  # not a training or evaluation seed


def tensorrt_plan(progress: Callable[[str], None]) -> str | None:
    """The MSDA mode to build a TensorRT engine with here, or None where TensorRT cannot run."""
    from ..backends.tensorrt.cuda_device import open_device
    from ..backends.tensorrt.flavour import (
        RTX,
        RTX_COMPUTE_CAPABILITIES,
        import_tensorrt,
    )
    from ..backends.tensorrt.plugins import find_plugin_library

    try:
        tensorrt = import_tensorrt()
        gpu, capability = open_device(0).properties()
    except DetrtRuntimeError as error:
        progress(f"TensorRT not usable here ({str(error).split(';')[0]}): using ONNX Runtime on the CPU")
        return None
    if tensorrt.flavour == RTX and capability not in RTX_COMPUTE_CAPABILITIES:
        progress(f"TensorRT-RTX does not run on {gpu} (compute capability {capability}): using ONNX Runtime on the CPU")
        return None
    try:
        find_plugin_library()
        return "plugin"
    except DetrtRuntimeError:
        if tensorrt.flavour == RTX:
            progress("libdetrt_trt_plugins not found (TensorRT-RTX has no built-in MSDA plugin): portable graph")
            return "portable"
        progress("libdetrt_trt_plugins not found: using TensorRT's built-in MSDA plugin")
        return "nvidia"


def _candidate(detector: object, out: Path, count: int, progress: Callable[[str], None]) -> Model:
    from detrt.export import ExportOptions, export_onnx

    mode = tensorrt_plan(progress)
    onnx_path = out / f"{ZOO_NAME}-{mode or 'portable'}.onnx"
    export_onnx(detector, onnx_path, ExportOptions(msda=mode or "portable", batch=None), progress=progress)
    if mode is None:
        return open_model(onnx_path)
    from ..backends.tensorrt.build import BatchProfile, BuildOptions, build_engine

    engine_path = onnx_path.with_suffix(".engine")
    build_engine(onnx_path, engine_path, BuildOptions(batch=BatchProfile(1, count, count)), progress=progress)
    return open_model(engine_path, device="cuda")


def run_demo(out: str | Path = "detrt-demo", count: int = 8, conf: float = 0.5,
             progress: Callable[[str], None] = print) -> dict:
    """Export, run, compare and draw; writes OUT/images/*.png and OUT/summary.json, returns the summary."""
    from detrt.detectors import render, zoo

    from .drawing import draw_detections, save_image

    if count < 1:
        raise InputError(f"--images must be at least 1, got {count}")
    start = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    detector = zoo.load_zoo(ZOO_NAME)
    candidate = _candidate(detector, out, count, progress)
    reference = open_model(detector)
    images = [np.asarray(render(DEMO_SEED, index)[0]) for index in range(count)]
    progress(f"detecting in {count} generated images with {candidate.backend.name} and PyTorch")
    candidate.detect(images)  # warm-up at the same batch, so the timing below is steady-state
    timed = time.perf_counter()
    found = candidate.detect(images)
    candidate_ms = (time.perf_counter() - timed) * 1000.0 / count
    timed = time.perf_counter()
    expected = reference.detect(images)
    reference_ms = (time.perf_counter() - timed) * 1000.0 / count
    saved = [str(save_image(out / "images" / f"demo_{index:02d}.png", draw_detections(image, detections.above(conf))))
             for index, (image, detections) in enumerate(zip(images, found))]
    summary = {"model": ZOO_NAME, **candidate.describe(), "images": count, "conf": conf,
               "detections": sum(len(d.above(conf)) for d in found),
               "ms_per_image": round(candidate_ms, 2), "pytorch_ms_per_image": round(reference_ms, 2),
               "agreement_with_pytorch": compare_detections(expected, found, conf),
               "annotated": saved, "seconds": round(time.perf_counter() - start, 1)}
    write_json_atomic(out / "summary.json", summary)
    return summary
