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
# bilinear corners of one head's L*P samples (32 bytes each, plus one row, plus 8 bytes in the fused
# form) must fit the kernel's dynamic shared memory: 48 KiB less its static table of 16 levels (12
# bytes each).
MAX_LEVELS = 16
MAX_SAMPLES_PER_HEAD = (48 * 1024 - MAX_LEVELS * 12 - 8) // 32 - 1

def _int32(g, tensor):  # noqa: ANN001, ANN202 (torch.onnx graph context and values)
    return g.op("Cast", tensor, to_i=6)  # onnx.TensorProto.INT32


def _ms_deform_attn_symbolic(g, value, spatial_shapes, level_start_index, sampling_locations,  # noqa: ANN001, ANN202
                             attention_weights, impl):
    mode = active_mode()
    if mode is None:
        raise RuntimeError("detrt::ms_deform_attn is exported only within detrt.export's plugin_mode")
    node = PLUGIN_NODES[mode]
    output = g.op(f"{node.domain}::{node.name}", value, _int32(g, spatial_shapes), _int32(g, level_start_index),
                  sampling_locations, attention_weights, plugin_version_s=node.version,
                  plugin_namespace_s=node.namespace)
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
                                   sampling_offsets, attention_logits, impl):
    if active_mode() != "plugin":
        raise RuntimeError("the fused MSDA op is exported only as the detrt plugin (msda='plugin')")
    node = DETRT_FUSED_PLUGIN
    output = g.op(f"{node.domain}::{node.name}", value, _int32(g, spatial_shapes), _int32(g, level_start_index),
                  reference_points, sampling_offsets, attention_logits, plugin_version_s=node.version,
                  plugin_namespace_s=node.namespace)
    n, _, m, d = symbolic_helper._get_tensor_sizes(value)
    lq = symbolic_helper._get_tensor_sizes(reference_points)[1]
    output.setType(value.type().with_sizes([n, lq, m * d if m is not None and d is not None else None]))
    return output


def register_msda_symbolic(opset: int) -> None:
    """Map `detrt::ms_deform_attn` (and its fused form) to plugin nodes for the TorchScript exporter."""
    torch.onnx.register_custom_op_symbolic("detrt::ms_deform_attn", _ms_deform_attn_symbolic, opset)
    torch.onnx.register_custom_op_symbolic("detrt::ms_deform_attn_fused", _ms_deform_attn_fused_symbolic, opset)


def check_msda_supported(mode: str, levels: int, points: int) -> None:
    """Refuse, at export time, an MSDA configuration that the plugin of `mode` cannot run."""
    if mode != "plugin":
        return
    if levels > MAX_LEVELS:
        raise InputError(f"the detrt MSDA plugin supports at most {MAX_LEVELS} feature levels, the model has "
                         f"{levels}; export with --msda portable")
    if levels * points > MAX_SAMPLES_PER_HEAD:
        raise InputError(f"the detrt MSDA plugin supports at most {MAX_SAMPLES_PER_HEAD} samples per head "
                         f"(levels x points), the model has {levels} x {points} = {levels * points}; "
                         "export with --msda portable")
