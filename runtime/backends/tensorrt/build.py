"""`detrt build`: a detrt ONNX to a TensorRT engine (strongly typed network; TensorRT 10 and 11, or
TensorRT-RTX, which builds ahead of time without a GPU; see `tensorrt_env`).

Precision is decided in the ONNX (fp32, or fp16/int8 graphs from `detrt.calibrate`), never by
builder flags, which TensorRT 11 and TensorRT-RTX do not have. The engine and its JSON sidecar are
written atomically.
"""
from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import onnx
from detrt.detectors import InputError, write_bytes_atomic
from detrt.export import (
    DEFORM_CONV_PLUGIN,
    NVIDIA_PLUGIN,
    load_onnx,
    read_metadata,
    validate_plugin_graph,
)

from ...errors import EngineBuildError
from ..base import INPUT_NAME
from .cuda_device import open_device
from .flavour import (
    RTX,
    RTX_COMPUTE_CAPABILITIES,
    TensorRT,
    build_environment,
    import_tensorrt,
)
from .plugins import load_plugins
from .sidecar import write_sidecar


@dataclass(frozen=True)
class BatchProfile:
    """The optimisation profile's batch sizes."""

    min: int
    opt: int
    max: int

    @classmethod
    def parse(cls, text: str) -> BatchProfile:
        """"N" or "min:opt:max" (1 <= min <= opt <= max)."""
        parts = text.split(":")
        if len(parts) not in (1, 3) or not all(part.isdigit() for part in parts):
            raise InputError(f"--batch must be N or min:opt:max (e.g. 1:4:8), got {text!r}")
        values = [int(part) for part in parts] * (3 if len(parts) == 1 else 1)
        if not 1 <= values[0] <= values[1] <= values[2]:
            raise InputError(f"--batch needs 1 <= min <= opt <= max, got {text!r}")
        return cls(*values)


@dataclass(frozen=True)
class BuildOptions:
    """What `detrt build` can be told besides the files."""

    batch: BatchProfile | None = None  # default: the ONNX's fixed batch, or 1:1:1 for a dynamic one
    workspace_mb: int | None = None
    timing_cache: Path | None = None
    dla_core: int | None = None
    plugin_lib: str | None = None
    flavour: str | None = None  # TENSORRT, RTX, or None: TensorRT where it imports, else TensorRT-RTX
    compute_capabilities: tuple[str, ...] = ()  # TensorRT-RTX targets ("8.6", ...); () = its portable default


def input_profile(shape: tuple[int, ...], batch: BatchProfile | None) -> tuple[tuple[int, ...], ...]:
    """(min, opt, max) shapes of the `images` input, or an error when `batch` cannot apply to `shape`."""
    if any(dim < 0 for dim in shape[1:]):
        raise EngineBuildError(f"the input {INPUT_NAME} has dynamic spatial dimensions {shape}; export with a fixed "
                               "--size")
    if shape[0] >= 0:
        if batch is not None and (batch.min, batch.max) != (shape[0], shape[0]):
            raise EngineBuildError(f"the ONNX has a fixed batch of {shape[0]}, so --batch {batch.min}:{batch.opt}:"
                                   f"{batch.max} cannot apply; export with `detrt export --batch dynamic` for a range")
        return (tuple(shape),) * 3
    batch = batch or BatchProfile(1, 1, 1)
    return tuple((size, *shape[1:]) for size in (batch.min, batch.opt, batch.max))


def file_sha256(path: Path) -> str:
    """SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _progress_monitor(trt: object, progress: Callable[[str], None]) -> object:
    """A TensorRT IProgressMonitor that reports top-level phases (None where the API lacks it)."""
    base = getattr(trt, "IProgressMonitor", None)
    if base is None:
        return None

    class Monitor(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.started: dict[str, float] = {}

        def phase_start(self, phase_name: str, parent_phase: str | None, num_steps: int) -> None:
            if parent_phase is None:
                self.started[phase_name] = time.perf_counter()
                progress(f"{phase_name} ({num_steps} steps)")

        def step_complete(self, phase_name: str, step: int) -> bool:
            return True

        def phase_finish(self, phase_name: str) -> None:
            if phase_name in self.started:
                progress(f"{phase_name} done in {time.perf_counter() - self.started.pop(phase_name):.1f} s")

    return Monitor()


def _parse(tensorrt: TensorRT, network: object, logger: object, onnx_path: Path) -> None:
    parser = tensorrt.module.OnnxParser(network, logger)
    if parser.parse_from_file(str(onnx_path)):
        return
    errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
    hint = ""
    if any("plugin" in error.lower() for error in errors):
        other_modes = "--msda portable" if tensorrt.flavour == RTX else "--msda nvidia or --msda portable"
        hint = ("\nA plugin creator was not found: pass --plugin-lib PATH to libdetrt_trt_plugins, or export with "
                f"{other_modes}")
    listing = "\n  ".join(errors[:10]) + (f"\n  ... {len(errors) - 10} more" if len(errors) > 10 else "")
    raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path} ({len(errors)} errors):\n  {listing}{hint}")


def rtx_unsupported_nodes(model: onnx.ModelProto) -> list[str]:
    """Op types of the graph that TensorRT-RTX cannot build: TensorRT's built-in plugins (MSDA v2, DCNv2),
    and ONNX DeformConv, which TensorRT imports as a built-in plugin too."""
    return sorted({node.op_type for node in model.graph.node if node.domain == NVIDIA_PLUGIN.domain
                   or (node.op_type == "DeformConv" and node.domain in ("", "ai.onnx"))})


def _refuse_unsupported(tensorrt: TensorRT, model: onnx.ModelProto, onnx_path: Path, options: BuildOptions) -> None:
    """Options and graphs the flavour at hand cannot build, refused before any work."""
    if tensorrt.flavour == RTX:
        unsupported = rtx_unsupported_nodes(model)
        if "DeformConv" in unsupported or DEFORM_CONV_PLUGIN.name in unsupported:
            raise EngineBuildError(f"{onnx_path} has a deformable-convolution backbone ({', '.join(unsupported)}), and "
                                   "deformable convolution exists in TensorRT only as a built-in plugin, which TensorRT-RTX "
                                   "does not have; build it with standard TensorRT (--flavour tensorrt)")
        if unsupported:
            raise EngineBuildError(f"{onnx_path} uses TensorRT's built-in plugins ({', '.join(unsupported)}), which "
                                   "TensorRT-RTX does not have; export it with --msda plugin (detrt's MSDA plugin) or "
                                   "--msda portable")
        if options.dla_core is not None:
            raise EngineBuildError("TensorRT-RTX has no DLA; leave out --dla, or build on a Jetson with --flavour tensorrt")
    elif options.compute_capabilities:
        raise EngineBuildError("--compute-capability applies to TensorRT-RTX only (standard TensorRT builds for the GPU "
                               "at hand); add --flavour rtx or leave it out")


def _configure(tensorrt: TensorRT, builder: object, network: object,
               options: BuildOptions) -> tuple[object, list, object]:
    trt = tensorrt.module
    config = builder.create_builder_config()  # type: ignore[attr-defined]
    if tensorrt.flavour == RTX and options.compute_capabilities:
        config.num_compute_capabilities = len(options.compute_capabilities)
        for index, target in enumerate(options.compute_capabilities):
            config.set_compute_capability(getattr(trt.ComputeCapability, RTX_COMPUTE_CAPABILITIES[target]), index)
    if options.workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_mb << 20)  # type: ignore[attr-defined]
    cache = None
    if options.timing_cache is not None:
        existing = options.timing_cache.read_bytes() if options.timing_cache.is_file() else b""
        cache = config.create_timing_cache(existing)
        config.set_timing_cache(cache, ignore_mismatch=False)
    if options.dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA  # type: ignore[attr-defined]
        config.DLA_core = options.dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)  # type: ignore[attr-defined]
    shape = tuple(network.get_input(0).shape)  # type: ignore[attr-defined]
    shapes = input_profile(shape, options.batch)
    if shape[0] < 0:
        profile = builder.create_optimization_profile()  # type: ignore[attr-defined]
        profile.set_shape(INPUT_NAME, *shapes)
        config.add_optimization_profile(profile)
    return config, [list(s) for s in shapes], cache


def build_engine(onnx_path: str | Path, engine_path: str | Path, options: BuildOptions = BuildOptions(),
                 progress: Callable[[str], None] = lambda message: None) -> dict:
    """Build `engine_path` (and its sidecar) from a detrt ONNX, its metadata and plugin nodes checked before
    TensorRT sees it; returns the sidecar."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    model = load_onnx(onnx_path, load_external_data=False)  # read once: metadata, plugin checks, flavour checks
    metadata = read_metadata(model)
    validate_plugin_graph(model)
    tensorrt = import_tensorrt(options.flavour)
    _refuse_unsupported(tensorrt, model, onnx_path, options)
    trt = tensorrt.module
    device = None if tensorrt.builds_without_gpu else open_device(0)
    environment = build_environment(tensorrt, device, options.compute_capabilities)
    logger = trt.Logger(trt.Logger.WARNING)
    plugins = load_plugins(trt, logger, metadata.msda, options.plugin_lib)
    builder = trt.Builder(logger)
    strongly_typed = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)  # always on (flag ignored) in 11
    network = builder.create_network(0 if strongly_typed is None else 1 << int(strongly_typed))
    progress(f"parsing {onnx_path} (MSDA {metadata.msda}, {metadata.precision})")
    _parse(tensorrt, network, logger, onnx_path)
    config, shapes, cache = _configure(tensorrt, builder, network, options)
    monitor = _progress_monitor(trt, progress)
    if monitor is not None:
        config.progress_monitor = monitor
    target = (f"compute capabilities {', '.join(environment['compute_capabilities'])} (ahead of time, no GPU needed)"
              if device is None else f"{environment['gpu']} (sm {environment['compute_capability']})")
    progress(f"building for {target}, {tensorrt.flavour} {tensorrt.version}, input {shapes[0]}..{shapes[2]}")
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT failed to build an engine from {onnx_path}; its log above says why "
                               "(a larger --workspace may help)")
    write_bytes_atomic(engine_path, bytes(serialized))
    if cache is not None:
        write_bytes_atomic(options.timing_cache, bytes(config.get_timing_cache().serialize()))  # type: ignore[arg-type]
    sidecar = {**environment, "precision": metadata.precision, "input_shapes": {INPUT_NAME: shapes},
               "onnx": {"path": str(onnx_path), "sha256": file_sha256(onnx_path)}, "plugins": plugins,
               "dla_core": options.dla_core, "build_seconds": round(time.perf_counter() - start, 1),
               "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "detrt_version": importlib.metadata.version("detrt"), "metadata_props": metadata.to_props()}
    write_sidecar(engine_path, sidecar)
    progress(f"wrote {engine_path} and {engine_path.name}.json")
    return sidecar
