"""`export_onnx`: a `Detector` to one ONNX file, with its MSDA as a plugin node or as plain ops."""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import onnx
import torch
from detrt.detectors import (
    Detector,
    DetrtError,
    MsdaModule,
    check_input_size,
    set_msda_impl,
)

from . import onnx_passes
from .deform_conv_nodes import register_deform_conv_symbolic
from .export_module import INPUT_NAME, OUTPUT_NAMES, RAW_OUTPUT_NAMES, ExportModule
from .metadata import ModelMetadata, describe_detector, write_metadata
from .msda_nodes import (
    DETRT_FUSED_PLUGIN,
    MSDA_MODES,
    PLUGIN_NODES,
    check_msda_supported,
    register_msda_symbolic,
)
from .onnx_schemas import register_plugin_schemas
from .patch import PatchError, patch_model
from .plugin_mode import plugin_mode
from .report import ExportReport

DEFAULT_OPSET = 17
# GridSample (portable MSDA) exists from opset 16; LayerNormalization and the rest need no more than 13.
MIN_OPSET = {"portable": 16, "plugin": 13, "nvidia": 13, "none": 13}
DEFORM_CONV_OPSET = 19  # ONNX DeformConv, what torchvision exports deformable convolution as
MAX_OPSET = 20  # the newest opset torch's TorchScript exporter writes


class ExportError(DetrtError, ValueError):
    """The detector cannot be exported with the options given; the message says why and what to do."""


@dataclass(frozen=True)
class ExportOptions:
    """How to export: MSDA mode, batch (None: dynamic), input size (H, W), opset, extra outputs."""

    msda: str = "plugin"
    batch: int | None = 1
    size: tuple[int, int] | None = None  # default: the detector's fixed pre-processing size
    opset: int = DEFAULT_OPSET
    raw: bool = False
    normalize_in_graph: bool = True
    simplify: bool = True
    fused: bool = False  # plugin mode: locations and softmax inside the plugin (DetrtMultiscaleDeformableAttnFused)


def _msda_modules(detector: Detector) -> list[MsdaModule]:
    return [m for m in detector.model.modules() if isinstance(m, MsdaModule)]


def msda_forms(detector: Detector, mode: str, fused: bool) -> dict[str, str]:
    """What each attention module of `detector` becomes in an export of `mode`: the plugin node or the
    portable ops, with its points per level and sampling method."""
    node = DETRT_FUSED_PLUGIN if fused else PLUGIN_NODES.get(mode)
    forms = {}
    for name, module in detector.model.named_modules():
        if not isinstance(module, MsdaModule):
            continue
        if module.plugin_problem:
            form = "portable (transformers' own sampling function)"
        elif node is not None:
            form = f"plugin node {node.name}"
        else:
            form = "portable (GridSample per level)" if module.method == "bilinear" else "portable (gather per level)"
        forms[name] = f"{form}, points per level {module.points_per_level}, {module.method}"
    return forms


def _has_deformable_conv(detector: Detector) -> bool:
    return bool(detector.config.deformable_stages)


def check_exportable(detector: Detector, options: ExportOptions) -> tuple[str, tuple[int, int]]:
    """Validate `options` for `detector`; returns the effective MSDA mode and input size (H, W)."""
    if detector.model.training:
        raise ExportError("the model is in training mode (dropout and auxiliary outputs would be exported); "
                          "call model.eval() first")
    if options.msda not in MSDA_MODES:
        raise ExportError(f"unknown MSDA mode {options.msda!r}; choose one of {MSDA_MODES}")
    attention = _msda_modules(detector)
    mode = options.msda if attention else "none"
    if not MIN_OPSET[mode] <= options.opset <= MAX_OPSET:
        raise ExportError(f"opset {options.opset} cannot express MSDA mode {mode!r}: use opset {MIN_OPSET[mode]} "
                          f"to {MAX_OPSET} (GridSample needs 16)")
    if _has_deformable_conv(detector) and options.opset < DEFORM_CONV_OPSET:
        raise ExportError(f"the backbone has deformable convolutions (stages {detector.config.deformable_stages}), "
                          f"which ONNX has from opset {DEFORM_CONV_OPSET} (DeformConv): pass --opset {DEFORM_CONV_OPSET}")
    for module in attention:
        try:
            check_msda_supported(mode, module.points_per_level, module.method)
        except ValueError as error:
            raise ExportError(str(error)) from None
    if options.fused and mode != "plugin":
        raise ExportError(f"the fused MSDA node exists only in --msda plugin mode (this export: {mode})")
    problems = sorted({module.plugin_problem for module in attention if module.plugin_problem})
    if mode in PLUGIN_NODES and problems:
        raise ExportError(f"{detector.config.arch} cannot use the MSDA plugin: {'; '.join(problems)}. Export the "
                          "portable graph (--msda portable), which computes the same function with ONNX ops")
    if options.fused and not all(module.supports_fused for module in attention):
        if any(module.method != "bilinear" for module in attention):
            raise ExportError(f"{detector.config.arch} samples with the discrete method, which `detrt patch` does "
                              "not fuse: export the plain plugin (drop --fused)")
        if options.opset < MIN_OPSET["portable"]:
            raise ExportError(f"the fused export of {detector.config.arch} goes through its portable graph, which "
                              f"needs opset {MIN_OPSET['portable']} or more: pass --opset {MIN_OPSET['portable']}")
    if options.batch is not None and options.batch < 1:
        raise ExportError(f"batch must be a positive number or dynamic, got {options.batch}")
    size = options.size or detector.preprocess.fixed_size
    if size is None:
        spec = detector.preprocess
        raise ExportError(f"this detector resizes images by their shortest edge ({spec.shortest_edge}, longest at "
                          f"most {spec.longest_edge}), so it has no single input size: pass --size HxW")
    size = check_input_size(tuple(size), "the export input size")
    if min(size) < 32:
        raise ExportError(f"input size {size} is too small: the backbone downsamples by 32")
    return mode, size


def _metadata(detector: Detector, options: ExportOptions, mode: str, size: tuple[int, int],
              outputs: tuple[str, ...]) -> ModelMetadata:
    node = DETRT_FUSED_PLUGIN if options.fused else PLUGIN_NODES.get(mode)
    return describe_detector(detector, size, normalize_in_graph=options.normalize_in_graph, batch=options.batch,
                             msda=mode, plugin_name=node.name if node else "",
                             plugin_version=node.version if node else "", outputs=outputs, opset=options.opset)


def _trace_to_onnx(module: ExportModule, sample: torch.Tensor, options: ExportOptions,
                   outputs: tuple[str, ...]) -> onnx.ModelProto:
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *outputs)} if options.batch is None else None
    buffer = io.BytesIO()
    register_msda_symbolic(options.opset)
    register_deform_conv_symbolic(options.opset)
    with plugin_mode(options.msda if options.msda in PLUGIN_NODES else None), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about constant shapes: sizes are fixed on purpose
        torch.onnx.export(module, (sample,), buffer, dynamo=False, opset_version=options.opset,
                          input_names=[INPUT_NAME], output_names=list(outputs), dynamic_axes=dynamic,
                          do_constant_folding=True)
    return onnx.load_from_string(buffer.getvalue())


def _fuse_portable(model: onnx.ModelProto, detector: Detector, progress: Callable[[str], None]) -> onnx.ModelProto:
    """The portable graph of a model whose attention modules compute their own locations (the HF families),
    with every MSDA subgraph replaced by the fused node, as `detrt patch --fused` does and checks it."""
    progress("fusing the MSDA subgraphs of the portable graph (detrt patch --fused)")
    try:
        fused, report = patch_model(model, f"the portable graph of {detector.config.arch}", fused=True, progress=progress)
    except PatchError as error:
        raise ExportError(f"{error}; export the plain plugin (drop --fused)") from error
    if report.not_fused or report.unsupported:
        raise ExportError(f"{detector.config.arch}: not every MSDA subgraph could be fused "
                          f"({'; '.join(report.not_fused + report.unsupported)}); export the plain plugin (drop --fused)")
    return fused


def export_onnx(detector: Detector, path: str | Path, options: ExportOptions = ExportOptions(),
                progress: Callable[[str], None] = lambda message: None) -> ExportReport:
    """Export `detector` to `path` (written atomically) and describe the result.

    The graph takes ``images`` and returns ``scores``, ``labels``, ``boxes`` (see `ExportModule`);
    its metadata (`read_metadata`) tells runtimes how to pre- and post-process.
    """
    mode, size = check_exportable(detector, options)
    outputs = OUTPUT_NAMES + (RAW_OUTPUT_NAMES if options.raw else ())
    attention = _msda_modules(detector)
    # modules that compute their own locations (the HF families): traced portable, fused afterwards
    fuse_after_tracing = options.fused and not all(module.supports_fused for module in attention)
    trace_options = replace(options, msda="portable", fused=False) if fuse_after_tracing else options
    previous = [(module.impl, module.fused) for module in attention]
    set_msda_impl(detector.model, "detrt" if trace_options.msda in PLUGIN_NODES else "reference")
    for module in attention:
        module.fused = trace_options.fused
    try:
        module = ExportModule(detector, size, options.normalize_in_graph, options.raw).eval()
        sample = torch.rand(options.batch or 2, 3, *size) * (255.0 if options.normalize_in_graph else 1.0)
        progress(f"tracing {detector.config.arch} at {size[0]}x{size[1]}, MSDA {trace_options.msda}, opset {options.opset}")
        with torch.no_grad():
            traced = module(sample)
            if not all(bool(torch.isfinite(t).all()) for t in traced if t.is_floating_point()):
                raise ExportError("the model gives NaN or infinite outputs on a test input: its weights are broken "
                                  "(check the checkpoint); nothing was written")
            output_shapes = [tuple(t.shape) for t in traced]
            model = _trace_to_onnx(module, sample, trace_options, outputs)
    finally:
        for module_, (impl, fused) in zip(attention, previous):
            module_.impl, module_.fused = impl, fused
    register_plugin_schemas()
    onnx_passes.add_level_shapes(model)
    if options.simplify:
        progress("simplifying (onnxslim)")
        model = onnx_passes.simplify(model)
    if fuse_after_tracing:
        model = _fuse_portable(model, detector, progress)
    progress("shape inference and checks")
    onnx_passes.set_output_shapes(model, [(options.batch, *shape[1:]) for shape in output_shapes])
    model = onnx_passes.infer_shapes(model)
    unknown = onnx_passes.missing_shapes(model)
    if unknown:
        raise ExportError(f"shape inference left {len(unknown)} tensors without a shape, e.g. {unknown[:5]}")
    write_metadata(model, _metadata(detector, options, mode, size, outputs))
    onnx_passes.finalize(model)
    saved = onnx_passes.save_atomic(model, path)
    progress(f"wrote {saved}")
    return ExportReport.of(model, saved, msda_forms(detector, mode, options.fused))
