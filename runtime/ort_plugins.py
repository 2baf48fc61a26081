"""Run plugin graphs in ONNX Runtime: our implementation of the MSDA plugin nodes for the CPU.

Route: onnxruntime-extensions Python custom ops that call ``libdetrt_plugins`` (the same C kernels
the TensorRT plugin calls, through `detrt.plugins.msda`). It needs no ONNX Runtime C++ headers or
build, and it checks the very kernels that ship. onnxruntime-extensions runs Python ops only in the
domain ``ai.onnx.contrib``, so sessions are made from a copy of the graph whose plugin nodes are
moved to that domain; the file on disk keeps the domain TensorRT expects.
"""
from __future__ import annotations

import copy
import functools
from pathlib import Path

import numpy as np
import onnx
import torch

from detrt.export.deform_conv_nodes import DEFORM_CONV_PLUGIN
from detrt.export.msda_nodes import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, NVIDIA_PLUGIN
from detrt.export.onnx_passes import plugin_nodes

CONTRIB_DOMAIN = "ai.onnx.contrib"


def _msda(value: np.ndarray, spatial_shapes: np.ndarray, level_start_index: np.ndarray, locations: np.ndarray,
          weights: np.ndarray) -> np.ndarray:
    from detrt.plugins import msda

    output = msda.forward(torch.from_numpy(value), torch.from_numpy(spatial_shapes),
                          torch.from_numpy(level_start_index), torch.from_numpy(locations), torch.from_numpy(weights))
    return output.numpy()


@functools.cache
def register_custom_ops() -> None:
    """Register the Python implementations of the MSDA plugin nodes with onnxruntime-extensions (once)."""
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    float_, int32 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int32
    signature = dict(inputs=[float_, int32, int32, float_, float_], outputs=[float_],
                     attrs={"plugin_version": PyCustomOpDef.dt_string, "plugin_namespace": PyCustomOpDef.dt_string})

    @onnx_op(op_type=DETRT_PLUGIN.name, **signature)
    def detrt_msda(value, spatial_shapes, level_start_index, locations, weights, **_):  # noqa: ANN001, ANN202
        return _msda(value, spatial_shapes, level_start_index, locations, weights)

    @onnx_op(op_type=DETRT_FUSED_PLUGIN.name, **{**signature, "inputs": [float_, int32, int32, float_, float_, float_]})
    def detrt_msda_fused(value, spatial_shapes, level_start_index, references, offsets, logits, **_):  # noqa: ANN001, ANN202
        from detrt.plugins import msda

        tensors = [torch.from_numpy(a) for a in (value, spatial_shapes, level_start_index, references, offsets, logits)]
        return msda.forward_fused(*tensors).numpy()

    @onnx_op(op_type=NVIDIA_PLUGIN.name, **signature)
    def nvidia_msda(value, spatial_shapes, level_start_index, locations, weights, **_):  # noqa: ANN001, ANN202
        n, _, m, d = value.shape
        return _msda(value, spatial_shapes, level_start_index, locations, weights).reshape(n, -1, m, d)


def _as_deform_conv(node: onnx.NodeProto) -> None:
    """NVIDIA's DCNv2 plugin node -> the standard ONNX DeformConv that ONNX Runtime runs (same math)."""
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    x, offset, mask, weight, bias = node.input
    del node.input[:], node.attribute[:]
    node.input.extend([x, weight, offset, bias, mask])
    node.op_type, node.domain = "DeformConv", ""
    node.attribute.extend([
        onnx.helper.make_attribute("strides", list(attrs.get("stride", [1, 1]))),
        onnx.helper.make_attribute("pads", list(attrs.get("padding", [0, 0])) * 2),
        onnx.helper.make_attribute("dilations", list(attrs.get("dilation", [1, 1]))),
        onnx.helper.make_attribute("group", attrs.get("group", 1)),
        onnx.helper.make_attribute("offset_group", attrs.get("deformable_group", 1))])


def contrib_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that ONNX Runtime can run: MSDA plugin nodes moved to the domain
    onnxruntime-extensions runs, NVIDIA's DCNv2 plugin nodes turned into ONNX DeformConv."""
    model = copy.deepcopy(model)
    nodes = [node for node in plugin_nodes(model) if node.op_type != DEFORM_CONV_PLUGIN.name]
    for node in plugin_nodes(model):
        if node.op_type == DEFORM_CONV_PLUGIN.name:
            _as_deform_conv(node)
    for node in nodes:
        node.domain = CONTRIB_DOMAIN
    if nodes and not any(o.domain == CONTRIB_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return model


def create_session(model: str | Path | onnx.ModelProto, providers: list[str] | None = None,
                   threads: int = 0):  # noqa: ANN201 (onnxruntime.InferenceSession)
    """An ONNX Runtime session for any detrt graph; plugin graphs get our MSDA implementation."""
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    if plugin_nodes(proto):
        from onnxruntime_extensions import get_library_path

        register_custom_ops()
        options.register_custom_ops_library(get_library_path())
        proto = contrib_copy(proto)
    return ort.InferenceSession(proto.SerializeToString(), options, providers=providers or ["CPUExecutionProvider"])
