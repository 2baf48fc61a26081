"""Which TensorRT builds and runs engines here: standard TensorRT or TensorRT-RTX, and for what GPU.

Two flavours share one Python API (RTX's is the strongly typed subset of TensorRT's):

- ``tensorrt`` (module ``tensorrt``, 10.x / 11.x): engines are built on, and for, the GPU at hand
  (data-centre GPUs, desktop GPUs, Jetson).
- ``tensorrt-rtx`` (module ``tensorrt_rtx``, PyPI ``tensorrt-rtx``): engines are built ahead of time,
  without a GPU, for a list of compute capabilities, and run on RTX-class GPUs (Turing to Blackwell,
  not Hopper). No built-in NVIDIA plugins.

``auto`` takes standard TensorRT where ``import tensorrt`` works, otherwise TensorRT-RTX.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .cuda_device import CudaDevice
from ...errors import BackendUnavailableError, EngineBuildError

TENSORRT, RTX = "tensorrt", "tensorrt-rtx"
FLAVOUR_CHOICES = {"auto": None, "tensorrt": TENSORRT, "rtx": RTX}  # the CLI's --flavour
MODULES = {TENSORRT: "tensorrt", RTX: "tensorrt_rtx"}
INSTALL = {TENSORRT: "install the trt extra (`python3 -m pip install -e '.[trt]'`) on a machine with an NVIDIA GPU",
           RTX: "install the rtx extra (`python3 -m pip install -e '.[rtx]'`)"}

# Targets an RTX engine may be built for (IBuilderConfig compute capabilities), and what RTX builds
# for when none is named: a portable engine for 8.0, 8.6, 8.9 and 12.x (not 7.5, not Hopper's 9.0).
RTX_COMPUTE_CAPABILITIES = {"7.5": "SM75", "8.0": "SM80", "8.6": "SM86", "8.9": "SM89", "12.0": "SM120",
                            "12.1": "SM121"}
RTX_DEFAULT_TARGETS = ("8.0", "8.6", "8.9", "12.0", "12.1")


@dataclass(frozen=True)
class TensorRT:
    """An imported TensorRT flavour: `module` is `tensorrt` or `tensorrt_rtx`."""

    flavour: str
    module: ModuleType

    @property
    def version(self) -> str:
        return str(self.module.__version__)

    @property
    def builds_without_gpu(self) -> bool:
        """TensorRT-RTX builds ahead of time for named targets; standard TensorRT builds for the GPU at hand."""
        return self.flavour == RTX


def import_tensorrt(flavour: str | None = None) -> TensorRT:
    """TensorRT of `flavour` (TENSORRT or RTX), or with None the first of the two that imports."""
    if flavour not in (None, TENSORRT, RTX):
        raise BackendUnavailableError(f"unknown TensorRT flavour {flavour!r}; use one of {', '.join(FLAVOUR_CHOICES)}")
    errors = []
    for candidate in (flavour,) if flavour else (TENSORRT, RTX):
        try:
            module = __import__(MODULES[candidate])
        except ImportError as error:
            errors.append(f"`import {MODULES[candidate]}`: {error}")
            continue
        trt = TensorRT(candidate, module)
        if candidate == RTX:
            ensure_rtx_library_link(trt)
        return trt
    wanted = flavour or f"{TENSORRT} or {RTX}"
    fixes = "; or ".join(INSTALL[name] for name in ((flavour,) if flavour else (TENSORRT, RTX)))
    raise BackendUnavailableError(f"TensorRT ({wanted}) is not installed here ({'; '.join(errors)}): {fixes}, or run the "
                                  "ONNX model with ONNX Runtime instead (`detrt run MODEL.onnx ...`)")


def rtx_library_folder(trt: TensorRT) -> Path:
    """The folder of the RTX wheel's shared libraries (`tensorrt_rtx_libs`, beside the module)."""
    import importlib.util

    spec = importlib.util.find_spec("tensorrt_rtx_libs")
    if spec is not None and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(trt.module.__file__).resolve().parent.parent / "tensorrt_rtx_libs"


def ensure_rtx_library_link(trt: TensorRT) -> None:
    """Repair the RTX wheel's missing `libtensorrt_rtx.so` link, or refuse with the one-line fix.

    The ONNX parser of `tensorrt-rtx` (1.7) `dlopen`s ``libtensorrt_rtx.so`` (through its RPATH, its own
    folder) when it adds a plugin layer, but the wheel ships only ``libtensorrt_rtx.so.1``, and the
    failure aborts the whole process. A relative symlink beside the real file is a safe repair: it names
    the same library the process has already loaded. Where the folder is read-only, a plugin graph would
    abort, so this is refused with the command to run.
    """
    folder = rtx_library_folder(trt)
    real, link = folder / "libtensorrt_rtx.so.1", folder / "libtensorrt_rtx.so"
    if link.exists() or not real.is_file():
        return
    temporary = folder / f".libtensorrt_rtx.so.{os.getpid()}.tmp"
    try:
        temporary.unlink(missing_ok=True)
        temporary.symlink_to(real.name)
        temporary.replace(link)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise BackendUnavailableError(
            f"the tensorrt-rtx wheel lacks {link} (its ONNX parser loads that name and aborts the process without it), "
            f"and detrt could not add the link ({error}); run `ln -s {real.name} {link}` once as the owner of that "
            "folder") from None


def parse_compute_capabilities(text: str | None) -> tuple[str, ...]:
    """"8.6,8.9" -> ("8.6", "8.9"); None -> () (RTX's portable default)."""
    if not text:
        return ()
    values = tuple(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    unknown = [value for value in values if value not in RTX_COMPUTE_CAPABILITIES]
    if unknown or not values:
        raise EngineBuildError(f"--compute-capability {text!r}: TensorRT-RTX builds for "
                               f"{', '.join(RTX_COMPUTE_CAPABILITIES)} (comma-separated), not {', '.join(unknown)}")
    return values


def build_environment(trt: TensorRT, device: CudaDevice | None, targets: tuple[str, ...] = ()) -> dict:
    """What an engine is built with and for, as the sidecar records it.

    Standard TensorRT: the GPU at hand (`device`). TensorRT-RTX: no GPU; `targets` (or RTX's default).
    """
    if trt.builds_without_gpu:
        return {"tensorrt_flavour": trt.flavour, "tensorrt_version": trt.version, "gpu": None,
                "compute_capability": None, "compute_capabilities": list(targets or RTX_DEFAULT_TARGETS),
                "portable_default": not targets}
    return run_environment(trt, device)  # type: ignore[arg-type]


def run_environment(trt: TensorRT, device: CudaDevice) -> dict:
    """Flavour, version and the GPU at hand: what an engine's sidecar is checked against."""
    gpu, capability = device.properties()
    return {"tensorrt_flavour": trt.flavour, "tensorrt_version": trt.version, "gpu": gpu,
            "compute_capability": capability}
