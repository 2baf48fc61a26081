"""Find and load the plugins a TensorRT engine of a detrt graph needs.

Our MSDA plugin (`DetrtMultiscaleDeformableAttn`, namespace "detrt") lives in
``libdetrt_trt_plugins``, searched by `detrt.plugins.library` (as ``libdetrt_plugins`` is):
``--plugin-lib PATH``, the environment variable ``DETRT_TRT_PLUGIN_LIB``, then the installed
``detrt/plugins`` and the build folders. NVIDIA's ``MultiscaleDeformableAttnPlugin_TRT`` comes with TensorRT
(``init_libnvinfer_plugins``). Portable graphs need neither.
"""
from __future__ import annotations

from pathlib import Path

from detrt.plugins import library

from ...errors import PluginLibraryError

ENV_VAR = library.TENSORRT_ENV_VAR
LIBRARY_FILE = library.TENSORRT_LIBRARY_FILE
_loaded: dict[str, object] = {}  # library path -> registry handle (a library is loaded once per process)


def candidate_paths(explicit: str | None = None) -> list[Path]:
    """Where the TensorRT plugin library may be, in search order."""
    return library.candidate_paths(LIBRARY_FILE, ENV_VAR, explicit)


def find_plugin_library(explicit: str | None = None) -> Path:
    """The first existing candidate, or an error naming every path tried and how to fix it."""
    tried = candidate_paths(explicit)
    for path in tried:
        if path.is_file():
            return path
    listing = "\n  ".join(str(path) for path in tried)
    raise PluginLibraryError(
        f"the TensorRT plugin library {LIBRARY_FILE} (detrt's MSDA plugin) was not found; tried:\n  {listing}\n"
        f"It is built by `python3 -m pip install -e .` on a machine with the TensorRT headers; pass --plugin-lib PATH "
        f"or set {ENV_VAR}, or export with --msda nvidia (TensorRT's built-in plugin) or --msda portable")


def load_plugins(trt: object, logger: object, msda: str, explicit: str | None = None) -> list[str]:
    """Register what a graph with MSDA mode `msda` needs; returns what was loaded, for the sidecar."""
    loaded = []
    if msda == "nvidia":
        if not trt.init_libnvinfer_plugins(logger, ""):  # type: ignore[attr-defined]
            raise PluginLibraryError("TensorRT's own plugin library (libnvinfer_plugin) failed to initialise; "
                                     "check the TensorRT installation")
        loaded.append("libnvinfer_plugin")
    if msda == "plugin" or explicit:
        path = str(find_plugin_library(explicit).resolve())
        if path not in _loaded:
            handle = trt.get_plugin_registry().load_library(path)  # type: ignore[attr-defined]
            if handle is None:
                raise PluginLibraryError(f"TensorRT could not load {path} (see the TensorRT log above): built for "
                                         "another TensorRT version or CUDA? Rebuild it with `python3 -m pip install -e .`")
            _loaded[path] = handle
        loaded.append(path)
    return loaded
