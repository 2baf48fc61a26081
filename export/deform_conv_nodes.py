"""How torchvision's `deform_conv2d` (the DCNv2 backbone stages) becomes ONNX.

- ``portable``: the standard ONNX ``DeformConv`` (opset 19), which ONNX Runtime runs.
- ``plugin`` / ``nvidia``: TensorRT's built-in ``ModulatedDeformConv2d`` plugin, version 2 (IPluginV3),
  inputs (x, offset, mask, weight, bias). Its offset layout, (dy, dx) per kernel point, is
  torchvision's. The choice follows the export's `plugin_mode`.
"""
from __future__ import annotations

import torch
from detrt.detectors import InputError
from torch.onnx import symbolic_helper

from .msda_nodes import PluginNode
from .plugin_mode import active_mode

DEFORM_CONV_PLUGIN = PluginNode("ModulatedDeformConv2d", "2", "", "trt", 4)


def _deform_conv2d_symbolic(g, x, weight, offset, mask, bias, stride_h, stride_w, pad_h, pad_w,  # noqa: ANN001, ANN202
                            dilation_h, dilation_w, groups, offset_groups, use_mask):
    stride = [symbolic_helper._get_const(v, "i", "stride") for v in (stride_h, stride_w)]
    pad = [symbolic_helper._get_const(v, "i", "padding") for v in (pad_h, pad_w)]
    dilation = [symbolic_helper._get_const(v, "i", "dilation") for v in (dilation_h, dilation_w)]
    groups = symbolic_helper._get_const(groups, "i", "groups")
    offset_groups = symbolic_helper._get_const(offset_groups, "i", "offset_groups")
    if not symbolic_helper._get_const(use_mask, "b", "use_mask"):
        raise InputError("only modulated deformable convolution (DCNv2, with a mask) is exported")
    if active_mode() is None:
        kernel = symbolic_helper._get_tensor_sizes(weight)[2:]
        return g.op("DeformConv", x, weight, offset, bias, mask, dilations_i=dilation, group_i=groups,
                    kernel_shape_i=kernel, offset_group_i=offset_groups, pads_i=pad + pad, strides_i=stride)
    node = DEFORM_CONV_PLUGIN
    output = g.op(f"{node.domain}::{node.name}", x, offset, mask, weight, bias, stride_i=stride, padding_i=pad,
                  dilation_i=dilation, group_i=groups, deformable_group_i=offset_groups,
                  plugin_version_s=node.version, plugin_namespace_s=node.namespace)
    n = symbolic_helper._get_tensor_sizes(x)[0]
    out_channels = symbolic_helper._get_tensor_sizes(weight)[0]
    _, _, height, width = symbolic_helper._get_tensor_sizes(offset)
    output.setType(x.type().with_sizes([n, out_channels, height, width]))
    return output


def register_deform_conv_symbolic(opset: int) -> None:
    """Map `torchvision::deform_conv2d` for the TorchScript exporter at `opset` (portable needs 19)."""
    torch.onnx.register_custom_op_symbolic("torchvision::deform_conv2d", _deform_conv2d_symbolic, opset)
