"""detrt.plugins: the native kernels of libdetrt_plugins (MSDA on CPU and CUDA).

`detrt.plugins.msda.forward` / `forward_fused` run them on torch tensors; `library` finds and loads
the shared library and raises `LibraryNotFoundError` when it is missing.
"""
from .library import LibraryNotFoundError, load_library

__all__ = ["LibraryNotFoundError", "load_library"]
