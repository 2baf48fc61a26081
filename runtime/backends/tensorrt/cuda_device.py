"""Device memory, a stream and CUDA graphs for the TensorRT backend: cuda-python first, pycuda second.

Both expose the same small surface (`CudaDevice`), so the backend does not care which one runs.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from ...errors import BackendUnavailableError

INSTALL_HINT = "install the trt extra (`python3 -m pip install -e '.[trt]'`: cuda-python, pycuda)"


class CudaDevice(Protocol):
    """One GPU, one stream."""

    library: str
    stream: int  # the raw stream handle TensorRT's execute_async_v3 takes

    def alloc(self, nbytes: int) -> int: ...
    def free(self, pointer: int) -> None: ...
    def upload(self, pointer: int, array: np.ndarray) -> None: ...
    def download(self, array: np.ndarray, pointer: int) -> None: ...
    def synchronize(self) -> None: ...
    def capture(self, launch: Callable[[], None]) -> object: ...
    def launch(self, graph: object) -> None: ...
    def properties(self) -> tuple[str, str]: ...


class CudaPythonDevice:
    """`CudaDevice` over cuda-python's runtime bindings."""

    library = "cuda-python"

    def __init__(self, index: int = 0) -> None:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        self.cudart, self.index = cudart, index
        self._check(cudart.cudaSetDevice(index), "cudaSetDevice")
        self._stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.stream = int(self._stream)

    def _check(self, result: object, call: str) -> object:
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self.cudart.cudaError_t.cudaSuccess:
            message = self.cudart.cudaGetErrorString(error)[1].decode()
            raise BackendUnavailableError(f"CUDA {call} failed on GPU {self.index}: {message} ({error.name}); "
                                          "TensorRT engines need an NVIDIA GPU with a working driver")
        return values[0] if len(values) == 1 else None

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.cudart.cudaMalloc(nbytes), "cudaMalloc"))

    def free(self, pointer: int) -> None:
        self._check(self.cudart.cudaFree(pointer), "cudaFree")

    def upload(self, pointer: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpyAsync(pointer, array.ctypes.data, array.nbytes, kind, self._stream),
                    "cudaMemcpyAsync")

    def download(self, array: np.ndarray, pointer: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(array.ctypes.data, pointer, array.nbytes, kind, self._stream),
                    "cudaMemcpyAsync")

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")

    def capture(self, launch: Callable[[], None]) -> object:
        """A CUDA graph of what `launch` enqueues on the stream, instantiated."""
        mode = self.cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal
        self._check(self.cudart.cudaStreamBeginCapture(self._stream, mode), "cudaStreamBeginCapture")
        launch()
        graph = self._check(self.cudart.cudaStreamEndCapture(self._stream), "cudaStreamEndCapture")
        return self._check(self.cudart.cudaGraphInstantiate(graph, 0), "cudaGraphInstantiate")

    def launch(self, graph: object) -> None:
        self._check(self.cudart.cudaGraphLaunch(graph, self._stream), "cudaGraphLaunch")

    def properties(self) -> tuple[str, str]:
        """GPU name and compute capability ("8.9")."""
        props = self._check(self.cudart.cudaGetDeviceProperties(self.index), "cudaGetDeviceProperties")
        name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
        return name.rstrip("\x00").strip(), f"{props.major}.{props.minor}"


class PyCudaDevice:
    """`CudaDevice` over pycuda (no CUDA graphs: use cuda-python for those)."""

    library = "pycuda"

    def __init__(self, index: int = 0) -> None:
        import pycuda.driver as cuda

        self.cuda = cuda
        try:
            cuda.init()
            self.device = cuda.Device(index)
            self.context = self.device.retain_primary_context()
            self.context.push()
        except cuda.Error as error:
            raise BackendUnavailableError(f"CUDA could not open GPU {index} through pycuda: {error}; "
                                          "TensorRT engines need an NVIDIA GPU with a working driver") from None
        self._stream = cuda.Stream()
        self.stream = int(self._stream.handle)
        self._allocations: dict[int, object] = {}

    def alloc(self, nbytes: int) -> int:
        allocation = self.cuda.mem_alloc(nbytes)
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, pointer: int) -> None:
        self._allocations.pop(pointer).free()

    def upload(self, pointer: int, array: np.ndarray) -> None:
        self.cuda.memcpy_htod_async(pointer, array, self._stream)

    def download(self, array: np.ndarray, pointer: int) -> None:
        self.cuda.memcpy_dtoh_async(array, pointer, self._stream)

    def synchronize(self) -> None:
        self._stream.synchronize()

    def capture(self, launch: Callable[[], None]) -> object:
        raise BackendUnavailableError(f"CUDA graphs need cuda-python (this process uses pycuda): {INSTALL_HINT}, "
                                      "or leave out --cuda-graph")

    def launch(self, graph: object) -> None:
        raise BackendUnavailableError("CUDA graphs need cuda-python")

    def properties(self) -> tuple[str, str]:
        major, minor = self.device.compute_capability()
        return self.device.name(), f"{major}.{minor}"


def open_device(index: int = 0) -> CudaDevice:
    """GPU `index` through cuda-python, else pycuda; a clear error when neither is installed."""
    try:
        return CudaPythonDevice(index)
    except ImportError:
        pass
    try:
        return PyCudaDevice(index)
    except ImportError:
        raise BackendUnavailableError(f"TensorRT engines need cuda-python or pycuda for GPU memory: {INSTALL_HINT}") from None
