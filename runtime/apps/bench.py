"""`detrt bench`: latency percentiles, throughput and the pre-process / inference / post-process split.

Every iteration runs the whole `Model.detect` path in its three stages on the same batch of generated
shapes images (their own sizes, so pre-processing includes the resize), timed separately.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import io
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from detrt.detectors import InputError, write_bytes_atomic, write_json_atomic

from ..model import Model

STAGES = ("preprocess", "inference", "postprocess")


def latency_stats(samples_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99, mean, min, max of millisecond samples, rounded to microseconds."""
    values = np.asarray(samples_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {name: round(float(value), 3) for name, value in
            (("p50", p50), ("p90", p90), ("p99", p99), ("mean", values.mean()), ("min", values.min()),
             ("max", values.max()))}


def environment() -> dict:
    """The machine and library versions a measurement belongs to."""
    import torch

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for package in ("detrt", "torch", "onnxruntime", "tensorrt"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform(), **versions,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def bench_images(count: int) -> list[np.ndarray]:
    """`count` generated shapes images (RGB arrays of the dataset's varied sizes)."""
    from detrt.detectors import render

    return [np.asarray(render(0, index)[0]) for index in range(count)]


def benchmark(model: Model, batch: int = 1, iters: int = 100, warmup: int = 10,
              progress: Callable[[str], None] = lambda message: None) -> dict:
    """Time `iters` runs of `model` on a batch of `batch` images after `warmup` untimed ones."""
    if batch < 1 or iters < 1 or warmup < 0:
        raise InputError(f"--batch and --iters must be >= 1 and --warmup >= 0, got {batch}, {iters} and {warmup}")
    limits = model.backend.batch
    if batch < limits.min or (limits.max is not None and batch > limits.max):
        raise InputError(f"this model runs batches of {limits.min}..{limits.max} images, not {batch}: export with "
                         "--batch dynamic (or build the engine with --batch min:opt:max) to change it")
    images = bench_images(batch)
    progress(f"warm-up: {warmup} runs at batch {batch}")
    for _ in range(warmup):
        model.detect(images)
    samples: dict[str, list[float]] = {stage: [] for stage in STAGES}
    last = time.perf_counter()
    for iteration in range(iters):
        t0 = time.perf_counter()
        prepared = model.prepare(images)
        t1 = time.perf_counter()
        outputs = model.infer(prepared)
        t2 = time.perf_counter()
        model.finish(outputs, prepared)
        t3 = time.perf_counter()
        for stage, seconds in zip(STAGES, (t1 - t0, t2 - t1, t3 - t2)):
            samples[stage].append(seconds * 1000.0)
        if t3 - last >= 2.0:
            progress(f"{iteration + 1}/{iters} runs")
            last = t3
    totals = [sum(parts) for parts in zip(*(samples[stage] for stage in STAGES))]
    return {**model.describe(), "batch_size": batch, "iters": iters, "warmup": warmup,
            "latency_ms": latency_stats(totals),
            "throughput_images_per_s": round(batch * iters / (sum(totals) / 1000.0), 2),
            "stages_ms": {stage: latency_stats(samples[stage]) for stage in STAGES},
            "samples_ms": [round(value, 3) for value in totals], "environment": environment()}


def write_histogram(result: dict, path: str | Path, title: str) -> Path:
    """A PNG histogram of the latencies in `result`, with p50/p90/p99 marked (matplotlib, Agg)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7, 4), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    axes.hist(result["samples_ms"], bins=min(50, max(5, len(result["samples_ms"]) // 4)), color="#4c72b0")
    for name, style in (("p50", "-"), ("p90", "--"), ("p99", ":")):
        value = result["latency_ms"][name]
        axes.axvline(value, color="#c44e52", linestyle=style, label=f"{name} {value:.2f} ms")
    axes.set_xlabel("latency per batch (ms)")
    axes.set_ylabel("runs")
    axes.set_title(title)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return write_bytes_atomic(path, buffer.getvalue())


def write_results(result: dict, out: str | Path, title: str) -> dict[str, str]:
    """bench.json and latency.png in `out`; returns their paths."""
    out = Path(out)
    json_path = write_json_atomic(out / "bench.json", result)
    png_path = write_histogram(result, out / "latency.png", title)
    return {"json": str(json_path), "histogram": str(png_path)}
