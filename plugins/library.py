"""Where detrt's native libraries are, and loading ``libdetrt_plugins`` (the MSDA kernels) with ctypes.

One search for both libraries (``libdetrt_plugins`` and the TensorRT plugin library
``libdetrt_trt_plugins``): the file named by the library's environment variable (only that one when
it is set), the installed package (``site-packages/detrt/plugins``, where the editable install puts
them), next to this file, then CMake build folders ``build/*/plugins`` of a source checkout. A
missing library is an error naming every path tried; nothing falls back silently.
"""
from __future__ import annotations

import ctypes
import functools
import os
import sys
import sysconfig
from pathlib import Path

ENV_VAR = "DETRT_PLUGIN_LIB"
TENSORRT_ENV_VAR = "DETRT_TRT_PLUGIN_LIB"
ABI_VERSION = 300  # DETRT_MSDA_VERSION of plugins/msda_kernels/detrt_msda.h that this module mirrors
BUILD_COMMAND = "python3 -m pip install -e ."
PLATFORM_FILES = {"win32": "detrt_plugins.dll", "darwin": "libdetrt_plugins.dylib"}
LIBRARY_FILE = PLATFORM_FILES.get(sys.platform, "libdetrt_plugins.so")
TENSORRT_LIBRARY_FILE = {"win32": "detrt_trt_plugins.dll"}.get(sys.platform, "libdetrt_trt_plugins.so")

# detrt_msda_status values that mean the inputs are wrong (ValueError); the others are RuntimeError.
INPUT_ERRORS = frozenset({1, 2, 3, 4, 5, 6, 7, 8, 11, 13, 14})
OUT_OF_MEMORY = 12


class LibraryNotFoundError(ImportError):
    """libdetrt_plugins could not be found or loaded."""


class Problem(ctypes.Structure):
    """Mirror of ``detrt_msda_problem`` in plugins/msda_kernels/detrt_msda.h."""

    _fields_ = [
        ("batch", ctypes.c_int64),
        ("num_values", ctypes.c_int64),
        ("num_heads", ctypes.c_int64),
        ("head_dim", ctypes.c_int64),
        ("num_queries", ctypes.c_int64),
        ("num_levels", ctypes.c_int64),
        ("num_points", ctypes.c_int64),
        ("dtype", ctypes.c_int32),
        ("index_dtype", ctypes.c_int32),
        ("spatial_shapes", ctypes.c_void_p),
        ("level_start_index", ctypes.c_void_p),
        ("level_points", ctypes.c_void_p),  # const int32_t*: NULL, or L point counts
        ("method", ctypes.c_int32),  # detrt_msda_method
    ]


def candidate_paths(file_name: str = LIBRARY_FILE, env_var: str = ENV_VAR, explicit: str | None = None) -> list[Path]:
    """Where the library `file_name` may be, in search order: `explicit`, else `env_var`'s file, else the
    installed package, this folder and the build folders of a checkout."""
    chosen = explicit or os.environ.get(env_var)
    if chosen:
        return [Path(chosen)]
    here = Path(__file__).resolve().parent
    package = sys.modules.get(__package__) if __package__ else None
    folders = [Path(sysconfig.get_path(key)) / "detrt" / "plugins" for key in ("platlib", "purelib")]
    folders += [Path(p) for p in getattr(package, "__path__", [])]
    folders.append(here)
    folders += sorted(here.parent.glob("build/*/plugins"))
    unique: dict[Path, None] = {}
    for folder in folders:
        unique.setdefault(folder.resolve() / file_name, None)
    return list(unique)


def load_library() -> ctypes.CDLL:
    """The loaded library (cached per DETRT_PLUGIN_LIB value); raises LibraryNotFoundError."""
    return _load(os.environ.get(ENV_VAR) or None)


@functools.lru_cache(maxsize=None)
def _load(explicit: str | None) -> ctypes.CDLL:
    if explicit is not None:
        if not Path(explicit).is_file():
            raise LibraryNotFoundError(f"{ENV_VAR}={explicit!r} does not name a file; unset it to search the "
                                       f"default locations, or build the library with `{BUILD_COMMAND}`")
        return _open(Path(explicit))
    tried = candidate_paths()
    for path in tried:
        if path.is_file():
            return _open(path)
    listing = "\n  ".join(str(path) for path in tried)
    raise LibraryNotFoundError(f"{LIBRARY_FILE} (the native MSDA kernels) was not found; tried:\n  {listing}\n"
                               f"Build it with `{BUILD_COMMAND}` from the detrt source folder, "
                               f"or set {ENV_VAR} to its path")


def _open(path: Path) -> ctypes.CDLL:
    try:
        library = ctypes.CDLL(str(path))
    except OSError as error:
        raise LibraryNotFoundError(f"{path} exists but could not be loaded: {error}") from error
    try:
        _declare(library)
    except AttributeError as error:
        raise LibraryNotFoundError(f"{path} is not libdetrt_plugins: {error}") from error
    if library.detrt_msda_version() != ABI_VERSION:
        raise LibraryNotFoundError(f"{path} has ABI version {library.detrt_msda_version()}, this detrt needs "
                                   f"{ABI_VERSION}: rebuild it with `{BUILD_COMMAND}`")
    return library


def _declare(library: ctypes.CDLL) -> None:
    """Argument and result types of the C ABI."""
    problem = ctypes.POINTER(Problem)
    pointer, integer = ctypes.c_void_p, ctypes.c_int
    signatures = {
        "detrt_msda_forward_cpu": [problem, pointer, pointer, pointer, pointer, integer],
        "detrt_msda_fused_forward_cpu": [problem, pointer, pointer, integer, pointer, pointer, pointer, integer],
        "detrt_msda_forward_cuda": [problem, pointer, pointer, pointer, pointer, pointer],
        "detrt_msda_fused_forward_cuda": [problem, pointer, pointer, integer, pointer, pointer, pointer, pointer],
    }
    for name, argtypes in signatures.items():
        function = getattr(library, name)
        function.argtypes, function.restype = argtypes, integer
    library.detrt_msda_error_string.argtypes, library.detrt_msda_error_string.restype = [integer], ctypes.c_char_p
    library.detrt_msda_build_info.argtypes, library.detrt_msda_build_info.restype = [], ctypes.c_char_p
    for name in ("detrt_msda_version", "detrt_msda_has_cuda"):
        getattr(library, name).argtypes, getattr(library, name).restype = [], integer


def check(library: ctypes.CDLL, status: int, function: str) -> None:
    """Raise for a non-zero detrt_msda_status: ValueError for bad inputs, MemoryError, else RuntimeError."""
    if status == 0:
        return
    message = f"{function}: {library.detrt_msda_error_string(status).decode()} (status {status})"
    if status in INPUT_ERRORS:
        raise ValueError(message)
    if status == OUT_OF_MEMORY:
        raise MemoryError(message)
    raise RuntimeError(message)
