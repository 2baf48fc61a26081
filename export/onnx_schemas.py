"""ONNX schemas (with shape inference) for the plugin nodes, so `onnx.shape_inference`, the checker
and the simplifier know their output types and shapes. `register_plugin_schemas` is idempotent."""
from __future__ import annotations

import functools

import onnx
from onnx.defs import OpSchema

from .deform_conv_nodes import DEFORM_CONV_PLUGIN
from .msda_nodes import (
    DETRT_FUSED_PLUGIN,
    DETRT_PLUGIN,
    METHOD_ATTRIBUTE,
    NVIDIA_PLUGIN,
    POINTS_ATTRIBUTE,
    PluginNode,
)

_LEVELS = (("value", "T", "(N, S, M, D)"), ("spatial_shapes", "I", "(L, 2) rows (H, W)"),
           ("level_start_index", "I", "(L,)"))
# Our plugin nodes take the other float inputs in value's type or, with a float16 value, in float32
# ("S"; the plugin refuses float32 value with float16 samples). NVIDIA's takes one type for all.
# With a points_per_level attribute the sampling inputs are (N, Lq, M, T, ...), T = its sum; the output
# shape, (N, Lq, M*D), reads only dimension 1 of input 3, the same in both layouts.
_INPUTS = _LEVELS + (("sampling_locations", "S", "(N, Lq, M, L, P, 2) or (N, Lq, M, T, 2)"),
                     ("attention_weights", "S", "(N, Lq, M, L, P) or (N, Lq, M, T)"))
_NVIDIA_INPUTS = _LEVELS + (("sampling_locations", "T", "(N, Lq, M, L, P, 2)"),
                            ("attention_weights", "T", "(N, Lq, M, L, P)"))
_FUSED_INPUTS = _LEVELS + (("reference_points", "S", "(N, Lq, L, 2 or 4)"),
                           ("sampling_offsets", "S", "(N, Lq, M, L, P, 2) or (N, Lq, M, T, 2)"),
                           ("attention_logits", "S", "(N, Lq, M, T)"))
_FLOATS = ["tensor(float)", "tensor(float16)"]
_SAMPLING_ATTRIBUTES = [
    OpSchema.Attribute(POINTS_ATTRIBUTE, OpSchema.AttrType.INTS, "points of each level (absent: P of the inputs)",
                       required=False),
    OpSchema.Attribute(METHOD_ATTRIBUTE, OpSchema.AttrType.STRING, "bilinear (absent) or discrete", required=False)]


def _dim(source: onnx.TypeProto, index: int) -> onnx.TensorShapeProto.Dimension | None:
    shape = source.tensor_type.shape
    return shape.dim[index] if source.tensor_type.HasField("shape") and len(shape.dim) > index else None


def _msda_output_type(node: PluginNode, ctx: onnx.shape_inference.InferenceContext) -> None:
    value, locations = ctx.get_input_type(0), ctx.get_input_type(3)
    output = onnx.TypeProto()
    output.tensor_type.elem_type = value.tensor_type.elem_type
    dims = [_dim(value, 0), _dim(locations, 1), _dim(value, 2), _dim(value, 3)]
    if all(d is not None for d in dims):
        if node.output_rank == 3:
            heads, head_dim = dims[2:]
            flat = onnx.TensorShapeProto.Dimension()
            if heads.HasField("dim_value") and head_dim.HasField("dim_value"):
                flat.dim_value = heads.dim_value * head_dim.dim_value
            dims = dims[:2] + [flat]
        output.tensor_type.shape.dim.extend(dims)
    ctx.set_output_type(0, output)


def _schema(node: PluginNode, output_shape: str, inputs: tuple = _INPUTS) -> OpSchema:
    schema = OpSchema(
        node.name, node.domain, 1, f"Multi-scale deformable attention, TensorRT plugin {node.name} v{node.version}.",
        inputs=[OpSchema.FormalParameter(name, type_str, doc) for name, type_str, doc in inputs],
        outputs=[OpSchema.FormalParameter("output", "T", output_shape)],
        type_constraints=[("T", _FLOATS, "value and output"), ("I", ["tensor(int32)"], "level table")]
        + ([("S", _FLOATS, "the other float inputs: T, or float32 with a float16 T")]
           if any(type_str == "S" for _, type_str, _ in inputs) else []),
        attributes=[OpSchema.Attribute("plugin_version", OpSchema.AttrType.STRING, "plugin version", required=False),
                    OpSchema.Attribute("plugin_namespace", OpSchema.AttrType.STRING, "plugin namespace",
                                       required=False),
                    OpSchema.Attribute("spatial_shapes", OpSchema.AttrType.INTS, "H0, W0, H1, W1, ...",
                                       required=False)]
        + (_SAMPLING_ATTRIBUTES if node in (DETRT_PLUGIN, DETRT_FUSED_PLUGIN) else []))
    schema.set_type_and_shape_inference_function(functools.partial(_msda_output_type, node))
    return schema


def _deform_conv_output_type(ctx: onnx.shape_inference.InferenceContext) -> None:
    x, offset, weight = ctx.get_input_type(0), ctx.get_input_type(1), ctx.get_input_type(3)
    output = onnx.TypeProto()
    output.tensor_type.elem_type = x.tensor_type.elem_type
    dims = [_dim(x, 0), _dim(weight, 0), _dim(offset, 2), _dim(offset, 3)]
    if all(d is not None for d in dims):
        output.tensor_type.shape.dim.extend(dims)
    ctx.set_output_type(0, output)


def _deform_conv_schema() -> OpSchema:
    node = DEFORM_CONV_PLUGIN
    ints = [OpSchema.Attribute(name, OpSchema.AttrType.INTS, name, required=False)
            for name in ("stride", "padding", "dilation")]
    scalars = [OpSchema.Attribute(name, OpSchema.AttrType.INT, name, required=False)
               for name in ("group", "deformable_group")]
    strings = [OpSchema.Attribute(name, OpSchema.AttrType.STRING, name, required=False)
               for name in ("plugin_version", "plugin_namespace")]
    schema = OpSchema(
        node.name, node.domain, 1, "Modulated deformable convolution (DCNv2), TensorRT plugin v2.",
        inputs=[OpSchema.FormalParameter(name, "T", name) for name in ("x", "offset", "mask", "weight", "bias")],
        outputs=[OpSchema.FormalParameter("output", "T", "(N, C_out, H_out, W_out)")],
        type_constraints=[("T", ["tensor(float)", "tensor(float16)"], "every tensor")],
        attributes=ints + scalars + strings)
    schema.set_type_and_shape_inference_function(_deform_conv_output_type)
    return schema


@functools.cache
def register_plugin_schemas() -> None:
    """Register the schemas of the plugin nodes: MSDA (ours, NVIDIA's) and NVIDIA's DCNv2 (once)."""
    schemas = [(DETRT_PLUGIN, lambda: _schema(DETRT_PLUGIN, "(N, Lq, M*D)")),
               (DETRT_FUSED_PLUGIN, lambda: _schema(DETRT_FUSED_PLUGIN, "(N, Lq, M*D)", _FUSED_INPUTS)),
               (NVIDIA_PLUGIN, lambda: _schema(NVIDIA_PLUGIN, "(N, Lq, M, D)", _NVIDIA_INPUTS)),
               (DEFORM_CONV_PLUGIN, _deform_conv_schema)]
    for node, make in schemas:
        if not onnx.defs.has(node.name, node.domain):
            onnx.defs.register_schema(make())

