"""TensorRT backend: a serialized engine run with the tensor-address API (TensorRT 10 and 11, and
TensorRT-RTX on RTX-class GPUs).

Buffers are allocated once for the largest batch of the engine's profile; each call copies the
batch in, enqueues `execute_async_v3` (or replays a CUDA graph captured for that batch size) on one
stream, and copies the outputs back. The engine's sidecar is checked before TensorRT sees the file,
and it names the flavour to import. TensorRT-RTX compiles its kernels for the GPU at first use; the
runtime cache beside the engine (`model.engine.runtime-cache`) keeps them for the next start.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from detrt.detectors import InputError, MissingFileError, write_bytes_atomic
from detrt.export import ModelMetadata

from ...errors import BackendUnavailableError, EngineMismatchError
from ..base import INPUT_NAME, OUTPUT_NAMES, BatchRange, gpu_index
from .cuda_device import open_device
from .flavour import RTX, import_tensorrt, run_environment
from .plugins import load_plugins
from .sidecar import check_sidecar, flavour, read_sidecar


@dataclass(frozen=True)
class TensorRTOptions:
    """How a TensorRT (or TensorRT-RTX) engine runs."""

    device: str = "cuda"  # cuda or cuda:N ("cpu" means GPU 0: engines run on a GPU only)
    plugin_lib: str | None = None  # libdetrt_trt_plugins for plugin graphs; default: searched
    cuda_graph: bool = False  # replay each batch size as a captured CUDA graph


class TensorRTBackend:
    """A TensorRT engine built by `detrt build`, its sidecar checked against this machine."""

    name = "tensorrt"

    def __init__(self, path: str | Path, options: TensorRTOptions = TensorRTOptions()) -> None:
        device = options.device
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(f"engine {path} does not exist; build one with `detrt build MODEL.onnx -o {path}`")
        sidecar = read_sidecar(path)
        tensorrt = import_tensorrt(flavour(sidecar))
        trt = tensorrt.module
        self.cuda = _open_gpu(tensorrt, gpu_index(device))
        environment = run_environment(tensorrt, self.cuda)
        check_sidecar(sidecar, environment, path)
        self.metadata = ModelMetadata.from_props(sidecar["metadata_props"])
        self.device = f"cuda:{gpu_index(device)} ({environment['gpu']}, {self.cuda.library})"
        logger = trt.Logger(trt.Logger.WARNING)
        load_plugins(trt, logger, self.metadata.msda, options.plugin_lib)
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise EngineMismatchError(f"TensorRT could not deserialize {path} (see its log above); rebuild it with "
                                      f"`detrt build {sidecar.get('onnx', {}).get('path', 'MODEL.onnx')} -o {path}`")
        self.runtime_cache = path.with_name(path.name + ".runtime-cache") if tensorrt.flavour == RTX else None
        self.context = self._execution_context()
        high = tuple(self.engine.get_tensor_shape(INPUT_NAME))
        low = high
        if high[0] < 0:  # dynamic batch: the range of the (only) optimisation profile
            low, _, high = (tuple(shape) for shape in self.engine.get_tensor_profile_shape(INPUT_NAME, 0))
        self.batch = BatchRange(int(low[0]), int(high[0]))
        self.buffers: dict[str, int] = {}
        self.dtypes = {name: np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))) for name in (INPUT_NAME, *OUTPUT_NAMES)}
        self.context.set_input_shape(INPUT_NAME, high)
        for name in (INPUT_NAME, *OUTPUT_NAMES):
            shape = tuple(self.context.get_tensor_shape(name))
            self.buffers[name] = self.cuda.alloc(int(np.prod(shape)) * self.dtypes[name].itemsize)
            self.context.set_tensor_address(name, self.buffers[name])
        self.cuda_graph = options.cuda_graph
        self.graphs: dict[int, object] = {}

    def _execution_context(self) -> object:
        """An execution context; under TensorRT-RTX with the runtime cache read from beside the engine."""
        if self.runtime_cache is None:
            return self.engine.create_execution_context()
        config = self.engine.create_runtime_config()
        self._cache = config.create_runtime_cache()
        self._cache_loaded = self.runtime_cache.is_file() and self._cache.deserialize(self.runtime_cache.read_bytes())
        config.set_runtime_cache(self._cache)
        return self.engine.create_execution_context(config)

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.cuda.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed (see the TensorRT log above)")

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """Run the engine on an (N, 3, H, W) batch, N within its profile."""
        images = np.ascontiguousarray(images, dtype=self.dtypes[INPUT_NAME])
        count = len(images)
        if not self.batch.min <= count <= (self.batch.max or count):
            raise InputError(f"this engine runs batches of {self.batch.min}..{self.batch.max}, not {count}")
        self.context.set_input_shape(INPUT_NAME, images.shape)
        outputs = {name: np.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name]) for name in OUTPUT_NAMES}
        self.cuda.upload(self.buffers[INPUT_NAME], images)
        if not self.cuda_graph:
            self._enqueue()
        else:
            if count not in self.graphs:
                self._enqueue()  # TensorRT finishes its lazy set-up on a first, uncaptured run
                self.graphs[count] = self.cuda.capture(self._enqueue)
            self.cuda.launch(self.graphs[count])
        for name, array in outputs.items():
            self.cuda.download(array, self.buffers[name])
        self.cuda.synchronize()
        if self.runtime_cache is not None and not self._cache_loaded:  # kernels compiled by this first run: keep them
            write_bytes_atomic(self.runtime_cache, bytes(self._cache.serialize()))
            self._cache_loaded = True
        return outputs

    def close(self) -> None:
        """Free the device buffers."""
        for pointer in self.buffers.values():
            self.cuda.free(pointer)
        self.buffers.clear()


def _open_gpu(tensorrt: object, index: int) -> object:
    """The GPU an engine runs on; for TensorRT-RTX engines the error says which GPUs they need."""
    try:
        return open_device(index)
    except BackendUnavailableError as error:
        if tensorrt.flavour != RTX:  # type: ignore[attr-defined]
            raise
        raise BackendUnavailableError(f"TensorRT-RTX engines run on RTX-class NVIDIA GPUs (compute capability 7.5, "
                                      f"8.x or 12.x; not Hopper) with a working driver, and none is usable here: "
                                      f"{error}") from None
