"""detrt.plugins: detrt's native libraries and their Python side.

- `msda_kernels/`: the multi-scale deformable attention kernels (CPU and CUDA) behind one C ABI,
  built into ``libdetrt_plugins``; `kernels.forward` / `kernels.forward_fused` run them on torch tensors.
- `msda_tensorrt/`: the TensorRT plugins over the same kernels, built into ``libdetrt_trt_plugins``.
- `library`: where both libraries are, and loading ``libdetrt_plugins`` (`LibraryNotFoundError` when
  it is missing).
"""
from .library import LibraryNotFoundError, load_library

__all__ = ["LibraryNotFoundError", "load_library"]
