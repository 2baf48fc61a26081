"""Shipped model on the CPU, batch 1, 256x256: PyTorch eager against ONNX Runtime, side by side.

Every contender runs the same network on the same input (a generated shapes image resized to
256x256, 0..255): normalisation, the Deformable DETR and the top-k post-processing, i.e. what the
exported graph contains (`ExportModule` on the PyTorch side), with the same number of intra-op
threads. Contenders take turns in blocks (`--block` runs each, the first of a block not counted):
turns make them share the machine's state, and blocks keep one library's idle thread pool (ONNX
Runtime spins its workers after a run; PyTorch's OpenMP threads spin at barriers) from stealing
the cores of the next library's first run. The table gives medians. Rows:

- PyTorch eager, MSDA as shipped (the grid_sample reference): the baseline;
- PyTorch eager, MSDA on libdetrt_plugins (for information);
- ONNX Runtime, portable graph (GridSample), session as `create_session` makes it: the acceptance
  row (>= 1.5x the baseline);
- the same with `session.intra_op.allow_spinning = 0` (for information);
- ONNX Runtime, plugin graph (MSDA nodes on libdetrt_plugins through onnxruntime-extensions).

    python3 benchmarks/runtime_cpu.py --threads 2
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from detrt.detectors import set_msda_impl
from detrt.detectors.data.shapes_dataset import render
from detrt.detectors.zoo import load_zoo
from detrt.export import ExportOptions, export_onnx
from detrt.export.export_module import ExportModule
from detrt.runtime.apps.bench import environment
from detrt.export.ort_plugins import create_session

ZOO = "shapes-deformable-detr"


def network_input() -> np.ndarray:
    """A generated image resized to 256x256, as the (1, 3, 256, 256) float32 0..255 network input."""
    from detrt.runtime.model import Model
    from detrt.runtime.backends.torch_backend import TorchBackend

    return Model(TorchBackend(load_zoo(ZOO))).prepare([np.asarray(render(0, 0)[0])]).images


def median_ms(functions: list[Callable[[], object]], rounds: int, block: int, warmup: int) -> list[float]:
    """Median wall time of each function in ms: `rounds` turns of `block` runs each, after `warmup` runs."""
    for function in functions:
        for _ in range(warmup):
            function()
    times: list[list[float]] = [[] for _ in functions]
    for _ in range(rounds):
        for function, samples in zip(functions, times):
            for run in range(block):
                start = time.perf_counter()
                function()
                if run > 0:
                    samples.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(samples) for samples in times]


def contenders(folder: Path, images: np.ndarray, threads: int) -> dict[str, Callable[[], object]]:
    """Name -> a call that runs the network once on `images`."""
    torch.set_num_threads(threads)
    shipped = load_zoo(ZOO)
    size = shipped.preprocess.fixed_size
    plugins = load_zoo(ZOO)
    set_msda_impl(plugins.model, "detrt")
    tensor = torch.from_numpy(images)
    sessions = {}
    for mode in ("portable", "plugin"):
        path = folder / f"{mode}.onnx"
        export_onnx(load_zoo(ZOO), path, ExportOptions(msda=mode, batch=1))
        sessions[mode] = create_session(path, threads=threads)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    sessions["no-spin"] = onnxruntime.InferenceSession(str(folder / "portable.onnx"), options,
                                                       providers=["CPUExecutionProvider"])
    modules = {name: ExportModule(detector, size, normalize_in_graph=True, raw=False).eval()
               for name, detector in (("reference", shipped), ("detrt", plugins))}

    def eager(module: ExportModule) -> Callable[[], object]:
        def call() -> object:
            with torch.inference_mode():
                return module(tensor)
        return call

    return {"PyTorch eager, MSDA reference (shipped)": eager(modules["reference"]),
            "PyTorch eager, MSDA libdetrt_plugins": eager(modules["detrt"]),
            "ONNX Runtime CPU, portable graph": lambda: sessions["portable"].run(None, {"images": images}),
            "ONNX Runtime CPU, portable graph, no spinning": lambda: sessions["no-spin"].run(None, {"images": images}),
            "ONNX Runtime CPU, plugin graph": lambda: sessions["plugin"].run(None, {"images": images})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for PyTorch and ONNX Runtime")
    parser.add_argument("--rounds", type=int, default=6, help="turns of every contender")
    parser.add_argument("--block", type=int, default=6, help="runs per turn (the first is not counted)")
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    images = network_input()
    with tempfile.TemporaryDirectory() as folder:
        runs = contenders(Path(folder), images, args.threads)
        medians = dict(zip(runs, median_ms(list(runs.values()), args.rounds, args.block, args.warmup)))
    baseline = medians["PyTorch eager, MSDA reference (shipped)"]
    env = environment()
    print(f"# {env['cpu']} ({env['cores']} cores), {args.threads} threads; torch {env['torch']}, onnxruntime "
          f"{env['onnxruntime']}, onnxruntime-extensions {importlib.metadata.version('onnxruntime-extensions')}; "
          f"median of {args.rounds} turns x {args.block - 1} counted runs after {args.warmup} warm-up; "
          f"{datetime.date.today().isoformat()}")
    print("| contender | median (ms) | speed-up vs PyTorch eager |")
    print("|---|---:|---:|")
    for name, value in medians.items():
        print(f"| {name} | {value:.1f} | {baseline / value:.2f}x |")


if __name__ == "__main__":
    main()
