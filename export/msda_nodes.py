"""How the `detrt::ms_deform_attn` op becomes ONNX: one plugin node (ours or NVIDIA's) or GridSample.

The three MSDA export modes:
- ``plugin``: one node ``DetrtMultiscaleDeformableAttn`` (domain ``detrt``) that our TensorRT plugin
  implements; output (N, Lq, M*D). Fused (`ExportOptions.fused`): ``DetrtMultiscaleDeformableAttnFused``
  takes reference points, raw offsets and attention logits instead of locations and weights.
- ``nvidia``: one node ``MultiscaleDeformableAttnPlugin_TRT`` version 2, TensorRT's built-in plugin;
  its output (N, Lq, M, D) is reshaped back to (N, Lq, M*D).
- ``portable``: the reference GridSample formulation, traced as plain ONNX ops that any runtime runs.

Index inputs of plugin nodes are int32, as TensorRT expects. Which node the op becomes follows the
export's `plugin_mode`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from detrt.detectors import MSDA_METHODS as METHODS
from detrt.detectors import InputError
from torch.onnx import symbolic_helper

from .plugin_mode import active_mode

MSDA_MODES = ("plugin", "nvidia", "portable")
SYMBOLIC_OPSET = 9  # the symbolic functions below emit ops that exist since this opset


@dataclass(frozen=True)
class PluginNode:
    """What a TensorRT plugin node looks like in ONNX."""

    name: str  # op_type, equal to the plugin's name
    version: str
    namespace: str
    domain: str
    output_rank: int  # 3: (N, Lq, M*D); 4: (N, Lq, M, D)


DETRT_PLUGIN = PluginNode("DetrtMultiscaleDeformableAttn", "1", "detrt", "detrt", 3)
DETRT_FUSED_PLUGIN = PluginNode("DetrtMultiscaleDeformableAttnFused", "1", "detrt", "detrt", 3)
NVIDIA_PLUGIN = PluginNode("MultiscaleDeformableAttnPlugin_TRT", "2", "", "trt", 4)
PLUGIN_NODES = {"plugin": DETRT_PLUGIN, "nvidia": NVIDIA_PLUGIN}

# Limits of our kernels (plugins/msda_kernels/detrt_msda.h and msda_cuda.cu): at most 16 levels, and the
# bilinear corners of one head's T = sum(P_l) samples (32 bytes each, plus one row, plus 8 bytes in the fused
# form) must fit the kernel's dynamic shared memory: 48 KiB less its static table of 16 levels (12
# bytes each: height, width, start; the point counts per level travel in the kernel's parameters).
MAX_LEVELS = 16
MAX_SAMPLES_PER_HEAD = (48 * 1024 - MAX_LEVELS * 12 - 8) // 32 - 1
# The optional node attributes `points_per_level` (INTS, one count per level; the sampling inputs are
# then (N, Lq, M, T, ...) with T their sum) and `method` (STRING): absent means one count for every level,
# read from the (N, Lq, M, L, P, ...) inputs, and this method.
DEFAULT_METHOD = METHODS[0]
POINTS_ATTRIBUTE, METHOD_ATTRIBUTE = "points_per_level", "method"


def _int32(g, tensor):  # noqa: ANN001, ANN202 (torch.onnx graph context and values)
    return g.op("Cast", tensor, to_i=6)  # onnx.TensorProto.INT32


def sampling_attributes(g_points, g_method) -> dict:  # noqa: ANN001 (torch.onnx values)
    """The node attributes for the op's `points_per_level` and `method` arguments, written only when not
    the default (uniform points taken from the input shapes, bilinear)."""
    points = symbolic_helper._maybe_get_const(g_points, "is")
    method = symbolic_helper._maybe_get_const(g_method, "s")
    attributes = {}
    if points:
        attributes[f"{POINTS_ATTRIBUTE}_i"] = [int(p) for p in points]
    if method != DEFAULT_METHOD:
        attributes[f"{METHOD_ATTRIBUTE}_s"] = method
    return attributes


def _ms_deform_attn_symbolic(g, value, spatial_shapes, level_start_index, sampling_locations,  # noqa: ANN001, ANN202
                             attention_weights, impl, points_per_level, method):
    mode = active_mode()
    if mode is None:
        raise RuntimeError("detrt::ms_deform_attn is exported only within detrt.export's plugin_mode")
    node = PLUGIN_NODES[mode]
    attributes = sampling_attributes(points_per_level, method)
    if attributes and node is not DETRT_PLUGIN:
        raise RuntimeError(f"{node.name} samples bilinearly with one point count for every level; "
                           f"this op has {attributes}")
    output = g.op(f"{node.domain}::{node.name}", value, _int32(g, spatial_shapes), _int32(g, level_start_index),
                  sampling_locations, attention_weights, plugin_version_s=node.version,
                  plugin_namespace_s=node.namespace, **attributes)
    n, _, m, d = symbolic_helper._get_tensor_sizes(value)
    lq = symbolic_helper._get_tensor_sizes(sampling_locations)[1]
    if node.output_rank == 4:
        output.setType(value.type().with_sizes([n, lq, m, d]))
        keep_n_lq = g.op("Constant", value_t=torch.tensor([0, 0, -1], dtype=torch.int64))
        output = g.op("Reshape", output, keep_n_lq)
    flat = m * d if m is not None and d is not None else None
    output.setType(value.type().with_sizes([n, lq, flat]))
    return output


def _ms_deform_attn_fused_symbolic(g, value, spatial_shapes, level_start_index, reference_points,  # noqa: ANN001, ANN202
                                   sampling_offsets, attention_logits, impl, points_per_level, method):
    if active_mode() != "plugin":
        raise RuntimeError("the fused MSDA op is exported only as the detrt plugin (msda='plugin')")
    node = DETRT_FUSED_PLUGIN
    output = g.op(f"{node.domain}::{node.name}", value, _int32(g, spatial_shapes), _int32(g, level_start_index),
                  reference_points, sampling_offsets, attention_logits, plugin_version_s=node.version,
                  plugin_namespace_s=node.namespace, **sampling_attributes(points_per_level, method))
    n, _, m, d = symbolic_helper._get_tensor_sizes(value)
    lq = symbolic_helper._get_tensor_sizes(reference_points)[1]
    output.setType(value.type().with_sizes([n, lq, m * d if m is not None and d is not None else None]))
    return output


def register_msda_symbolic(opset: int) -> None:
    """Map `detrt::ms_deform_attn` (and its fused form) to plugin nodes for the TorchScript exporter."""
    torch.onnx.register_custom_op_symbolic("detrt::ms_deform_attn", _ms_deform_attn_symbolic, opset)
    torch.onnx.register_custom_op_symbolic("detrt::ms_deform_attn_fused", _ms_deform_attn_fused_symbolic, opset)


def check_msda_supported(mode: str, points_per_level: list[int], method: str = DEFAULT_METHOD) -> None:
    """Refuse, at export time, an MSDA configuration that the plugin of `mode` cannot run."""
    levels, samples = len(points_per_level), sum(points_per_level)
    if mode == "nvidia" and (len(set(points_per_level)) != 1 or method != DEFAULT_METHOD):
        raise InputError(f"TensorRT's built-in MSDA plugin samples bilinearly with one point count for every level; "
                         f"the model samples {points_per_level} points per level, {method}: export with "
                         "--msda plugin (detrt's) or --msda portable")
    if mode != "plugin":
        return
    if levels > MAX_LEVELS:
        raise InputError(f"the detrt MSDA plugin supports at most {MAX_LEVELS} feature levels, the model has "
                         f"{levels}; export with --msda portable")
    if samples > MAX_SAMPLES_PER_HEAD:
        counts = (f"{levels} x {points_per_level[0]}" if len(set(points_per_level)) == 1
                  else " + ".join(map(str, points_per_level)))
        raise InputError(f"the detrt MSDA plugin supports at most {MAX_SAMPLES_PER_HEAD} samples per head "
                         f"(points summed over the levels), the model has {counts} = {samples}; "
                         "export with --msda portable")
