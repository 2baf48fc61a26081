"""`Model`: one backend plus the pre- and post-processing its metadata prescribes.

Pre-processing resizes every image to the graph's input size (bilinear, antialiased, as the
`Detector` does) and scales it to 0..255 or normalises it, as the metadata says; post-processing
maps the boxes back to each image's own pixels. The same code runs around every backend, so a
comparison of backends compares backends and nothing else.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from detrt.detectors import (
    Detections,
    Detector,
    InputError,
    MissingFileError,
    as_image_tensor,
)

from .backends.base import OUTPUT_NAMES, Backend

ONNX_SUFFIXES = (".onnx",)
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
CHECKPOINT_SUFFIXES = (".pth", ".pt")


@contextlib.contextmanager
def single_threaded_torch() -> Iterator[None]:
    """Run PyTorch on one thread inside the block. Per-image pre-processing is too small to gain from
    threads, and under CPU contention (a backend's spinning thread pool, other processes) PyTorch's
    OpenMP barriers turned a 1-2 ms resize into 30-70 ms on this project's 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class Prepared:
    """A network-ready batch and the (h, w) of each original image."""

    images: np.ndarray  # (N, 3, H, W) float32
    original_sizes: list[tuple[int, int]]


class Model:
    """Detect objects with any backend: `model.detect(images)` -> one `Detections` per image."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.metadata = backend.metadata

    @property
    def class_names(self) -> list[str]:
        """The class name of each label."""
        return list(self.metadata.class_names)

    def prepare(self, images: Sequence[object] | object) -> Prepared:
        """RGB images ((3, H, W) tensors, (H, W, 3) uint8 arrays or PIL images) -> a network batch."""
        items = images if isinstance(images, (list, tuple)) else [images]
        if not items:
            raise InputError("no images to detect in")
        batch, sizes = [], []
        with single_threaded_torch():
            for image in items:
                tensor = as_image_tensor(image)
                sizes.append((int(tensor.shape[-2]), int(tensor.shape[-1])))
                batch.append(self.metadata.network_input(tensor))
            return Prepared(torch.stack(batch).numpy(), sizes)

    def infer(self, prepared: Prepared) -> dict[str, np.ndarray]:
        """Run the backend in calls it accepts (split at its max batch, a short call padded to its min)."""
        images, parts, start = prepared.images, [], 0
        for count in self.backend.batch.chunk(len(images)):
            chunk = images[start:start + count]
            start += count
            missing = self.backend.batch.min - count
            if missing > 0:  # a fixed-batch graph: repeat the last image, drop its results
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], missing, axis=0)])
            outputs = self.backend.infer(chunk)
            parts.append({name: outputs[name][:count] for name in OUTPUT_NAMES})
        return {name: np.concatenate([part[name] for part in parts]) for name in OUTPUT_NAMES}

    def finish(self, outputs: dict[str, np.ndarray], prepared: Prepared, conf: float = 0.0) -> list[Detections]:
        """Graph outputs -> `Detections` in original-image pixels, keeping scores >= `conf`."""
        height, width = self.metadata.input_size
        results = []
        for i, (h, w) in enumerate(prepared.original_sizes):
            scale = np.array([w / width, h / height, w / width, h / height], dtype=np.float32)
            detections = Detections(torch.from_numpy(outputs["boxes"][i] * scale),
                                    torch.from_numpy(np.array(outputs["scores"][i], dtype=np.float32)),
                                    torch.from_numpy(np.array(outputs["labels"][i], dtype=np.int64)), self.class_names)
            detections.check_finite(f"the {self.backend.name} model, on image {i} of the batch,")
            results.append(detections.above(conf) if conf > 0 else detections)
        return results

    def detect(self, images: Sequence[object] | object, conf: float = 0.0) -> list[Detections]:
        """Detect in each image; boxes xyxy in the image's own pixels."""
        prepared = self.prepare(images)
        return self.finish(self.infer(prepared), prepared, conf)

    __call__ = detect

    def describe(self) -> dict:
        """Backend, device, input and batch, for summaries."""
        batch = self.backend.batch
        return {"backend": self.backend.name, "device": self.backend.device, "arch": self.metadata.arch,
                "input_size": list(self.metadata.input_size), "msda": self.metadata.msda,
                "precision": self.metadata.precision,
                "batch": "dynamic" if batch.max is None else (f"{batch.min}..{batch.max}" if batch.max != batch.min
                                                              else str(batch.min))}


def open_model(source: str | Path | Detector, device: str = "cpu", threads: int = 0, plugin_lib: str | None = None,
               cuda_graph: bool = False) -> Model:
    """A `Model` for a zoo name, a checkpoint (.pth: PyTorch), an ONNX (ONNX Runtime) or an engine (TensorRT)."""
    if isinstance(source, Detector):
        from .backends.torch_backend import TorchBackend, TorchOptions

        return Model(TorchBackend(source, TorchOptions(device, threads)))
    text = str(source)
    suffix = Path(text).suffix.lower()
    if suffix in ONNX_SUFFIXES:
        from .backends.onnxruntime_backend import OnnxRuntimeBackend, OnnxRuntimeOptions

        return Model(OnnxRuntimeBackend(text, OnnxRuntimeOptions(device, threads)))
    if suffix in ENGINE_SUFFIXES:
        from .backends.tensorrt.backend import TensorRTBackend, TensorRTOptions

        return Model(TensorRTBackend(text, TensorRTOptions(device, plugin_lib, cuda_graph)))
    from detrt.detectors import zoo

    if text in zoo.ENTRIES or suffix in CHECKPOINT_SUFFIXES:
        if suffix and not Path(text).is_file():
            raise MissingFileError(f"checkpoint {text} does not exist")
        from .backends.torch_backend import TorchBackend, TorchOptions

        return Model(TorchBackend(zoo.open_model(text), TorchOptions(device, threads)))
    raise InputError(f"cannot tell how to run {text!r}: give a zoo name ({', '.join(sorted(zoo.ENTRIES))}), a checkpoint "
                     f"({'/'.join(CHECKPOINT_SUFFIXES)}), an ONNX ({'/'.join(ONNX_SUFFIXES)}) or a TensorRT engine "
                     f"({'/'.join(ENGINE_SUFFIXES)})")
