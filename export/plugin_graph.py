"""Checks of MSDA plugin nodes before a graph runs or is built: the level table must be one the kernels
can index safely and one the network's feature maps really have.

Three views of the levels must agree: the ``spatial_shapes`` / ``level_start_index`` inputs (what ONNX
Runtime reads), the ``spatial_shapes`` attribute of detrt nodes (what TensorRT reads) and the value
tensor's S (the sum of H_l * W_l). The geometry is checked too: each level is the previous one halved
(rounded up) or, after a dilated stage, the same size, and the first is the input size divided by a
power of two, as the backbone and the extra stride-2 convolutions of Deformable DETR make them; a
swapped or reshaped table with the right total is therefore refused instead of giving silent garbage.
The optional ``points_per_level`` and ``method`` attributes of detrt nodes must agree with the inputs
too (one count per level, summing to the T of the sampling inputs; a method the kernels have).
"""
from __future__ import annotations

import numpy as np
import onnx
from detrt.detectors import DetrtError
from onnx import numpy_helper

from .msda_nodes import (
    DETRT_FUSED_PLUGIN,
    DETRT_PLUGIN,
    MAX_LEVELS,
    MAX_SAMPLES_PER_HEAD,
    METHOD_ATTRIBUTE,
    METHODS,
    NVIDIA_PLUGIN,
    POINTS_ATTRIBUTE,
)
from .onnx_passes import constant_values

MSDA_OP_TYPES = (DETRT_PLUGIN.name, DETRT_FUSED_PLUGIN.name, NVIDIA_PLUGIN.name)
INT32_MAX = 2**31 - 1
IMAGES_INPUT = "images"  # the (N, 3, H, W) input of every detrt export
_FIX = "export the model again with `detrt export`"


class PluginGraphError(DetrtError, ValueError):
    """An MSDA plugin node whose level table is inconsistent or unsafe; the message names the node."""


def level_table_problem(spatial_shapes: np.ndarray, level_start_index: np.ndarray,
                        num_values: int | None = None) -> str | None:
    """What is wrong with a level table (None when it is safe): shapes (L, 2) of positive (H, W), each
    H*W and their sum within int32, starts the running sum of H*W, the sum equal to `num_values` (S)."""
    shapes, starts = np.asarray(spatial_shapes), np.asarray(level_start_index)
    if shapes.ndim != 2 or shapes.shape[1:] != (2,) or not 1 <= len(shapes) <= MAX_LEVELS:
        return f"spatial_shapes must be (L, 2) with 1 <= L <= {MAX_LEVELS}, got shape {shapes.shape}"
    if starts.shape != (len(shapes),):
        return f"level_start_index must be ({len(shapes)},) for {len(shapes)} levels, got shape {starts.shape}"
    for name, table in (("spatial_shapes", shapes), ("level_start_index", starts)):
        if not np.issubdtype(table.dtype, np.integer):
            return f"{name} must hold integers, got {table.dtype}"
    sizes = [(int(h), int(w)) for h, w in shapes.tolist()]
    if any(h < 1 or w < 1 for h, w in sizes):
        return f"spatial_shapes must be positive, got {sizes}"
    areas = [h * w for h, w in sizes]
    if max(areas) > INT32_MAX or sum(areas) > INT32_MAX:
        return f"spatial_shapes {sizes} cover {sum(areas)} values, more than int32 indices reach"
    expected = np.cumsum([0, *areas[:-1]]).tolist()
    if starts.tolist() != expected:
        return f"level_start_index {starts.tolist()} is not the running sum {expected} of spatial_shapes {sizes}"
    if num_values is not None and sum(areas) != num_values:
        return f"spatial_shapes {sizes} cover {sum(areas)} values but the value input has S = {num_values}"
    return None


def _stride(large: tuple[int, int], small: tuple[int, int]) -> int | None:
    """The smallest whole s with `small` = `large` / s (rounded up) in both directions, if there is one."""
    for stride in range(1, max(large) + 1):
        divided = (-(-large[0] // stride), -(-large[1] // stride))
        if divided == small:
            return stride
        if divided[0] < small[0] or divided[1] < small[1]:
            return None
    return None


def geometry_problem(sizes: list[tuple[int, int]], input_size: tuple[int, int] | None) -> str | None:
    """Whether `sizes` are feature maps of an `input_size` image: each level is the input (or, with no
    known input size, the first level) divided by one whole stride in both directions (rounded up;
    powers of two for CNN pyramids, 14 or 16 for ViT patches), and the levels are ordered by stride:
    finest first (the Deformable DETR family; a repeat is a dilated DC5 stage) or coarsest first
    (LW-DETR's projector)."""
    base = input_size or sizes[0]
    scales = []
    for size in sizes:
        if size[0] * size[1] <= base[0] * base[1]:
            stride = _stride(base, size)
            scale = stride
        else:
            stride = None if input_size else _stride(size, base)
            scale = 1 / stride if stride else None
        if scale is None:
            where = f"the {base[0]}x{base[1]} input" if input_size else f"the first level {base}"
            return f"level {size} of {sizes} is not {where} divided by a whole stride (reshaped levels?)"
        scales.append(scale)
    steps = [b - a for a, b in zip(scales, scales[1:])]
    if not (all(step >= 0 for step in steps) or all(step <= 0 for step in steps)):
        return f"levels {sizes} are neither finest first nor coarsest first (swapped levels?)"
    return None


def _static_dims(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    graph = model.graph
    return {info.name: [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
            for info in (*graph.input, *graph.value_info, *graph.output) if info.type.tensor_type.HasField("shape")}


def _image_size(dims: dict[str, list[int | None]]) -> tuple[int, int] | None:
    images = dims.get(IMAGES_INPUT)
    if images is None or len(images) != 4 or None in images[2:]:
        return None
    return images[2], images[3]


def _levels(node: onnx.NodeProto, constants: dict, dims: dict) -> int | None:
    """L from the spatial_shapes input (a constant, or its static shape) or attribute; None if unknown."""
    if node.input[1] in constants:
        return len(numpy_helper.to_array(constants[node.input[1]]))
    shape = dims.get(node.input[1])
    if shape and shape[0] is not None:
        return shape[0]
    attribute = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "spatial_shapes"), None)
    return len(attribute) // 2 if attribute is not None else None


def sampling_problem(node: onnx.NodeProto, levels: int | None, dims: dict) -> str | None:
    """What is wrong with a node's `points_per_level` and `method` attributes against its inputs (None
    when they agree): a known method, one count >= 1 per level, their sum T the samples of the inputs."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    points, method = attributes.get(POINTS_ATTRIBUTE), attributes.get(METHOD_ATTRIBUTE)
    if node.op_type == NVIDIA_PLUGIN.name:
        present = [name for name in (POINTS_ATTRIBUTE, METHOD_ATTRIBUTE) if name in attributes]
        return f"has {present} attributes, which TensorRT's built-in plugin ignores" if present else None
    if method is not None and method.decode(errors="replace") not in METHODS:
        return f"its {METHOD_ATTRIBUTE} attribute {method.decode(errors='replace')!r} is not one of {METHODS}"
    fused = node.op_type == DETRT_FUSED_PLUGIN.name
    samples = [(name, dims.get(node.input[position])) for name, position in
               ((("sampling_offsets", 4), ("attention_logits", 5)) if fused
                else (("sampling_locations", 3), ("attention_weights", 4))) if position < len(node.input)]
    if points is None:
        name, shape = samples[0] if samples else ("", None)
        if shape is not None and len(shape) != 6:
            return (f"its {name} input has rank {len(shape)}, but without a {POINTS_ATTRIBUTE} attribute it must "
                    "be (N, Lq, M, L, P, 2)")
        return None
    points = list(points)
    if not points or min(points) < 1:
        return f"its {POINTS_ATTRIBUTE} attribute {points} must hold one count >= 1 per level"
    if levels is not None and len(points) != levels:
        return (f"its {POINTS_ATTRIBUTE} attribute has {len(points)} entries {points}, but spatial_shapes has "
                f"{levels} levels")
    if sum(points) > MAX_SAMPLES_PER_HEAD:
        return (f"its {POINTS_ATTRIBUTE} attribute sums to {sum(points)}, more than the {MAX_SAMPLES_PER_HEAD} "
                "samples per head the plugin takes")
    for (name, shape), rank in zip(samples, (5, 4)):
        if shape is None:
            continue
        if len(shape) != rank:
            return (f"its {POINTS_ATTRIBUTE} attribute needs a rank-{rank} {name} (N, Lq, M, T, ...), "
                    f"got rank {len(shape)}")
        if shape[3] is not None and shape[3] != sum(points):
            return (f"its {POINTS_ATTRIBUTE} attribute {points} sums to T = {sum(points)}, but its {name} input "
                    f"has T = {shape[3]}")
    return None


def _node_problem(node: onnx.NodeProto, constants: dict, dims: dict, input_size: tuple[int, int] | None) -> str | None:
    if len(node.input) < 3:
        return f"has {len(node.input)} inputs, fewer than value, spatial_shapes, level_start_index"
    problem = sampling_problem(node, _levels(node, constants, dims), dims)
    if problem or node.input[1] not in constants or node.input[2] not in constants:
        return problem  # a level table computed at run time: the op checks the table it receives
    shapes, starts = (numpy_helper.to_array(constants[name]) for name in node.input[1:3])
    value_dims = dims.get(node.input[0])
    num_values = value_dims[1] if value_dims is not None and len(value_dims) == 4 else None
    problem = level_table_problem(shapes, starts, num_values)
    if problem:
        return problem
    sizes = [tuple(row) for row in shapes.tolist()]
    attribute = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "spatial_shapes"), None)
    if attribute is not None and list(attribute) != shapes.reshape(-1).tolist():
        return (f"its spatial_shapes attribute {list(attribute)} (what TensorRT reads) differs from its "
                f"spatial_shapes input {shapes.reshape(-1).tolist()} (what ONNX Runtime reads)")
    return geometry_problem(sizes, input_size)


def validate_plugin_graph(model: onnx.ModelProto) -> None:
    """Refuse a graph with an MSDA plugin node whose level table is unsafe or inconsistent (PluginGraphError)."""
    constants, dims = constant_values(model), _static_dims(model)
    input_size = _image_size(dims)
    for node in model.graph.node:
        if node.op_type in MSDA_OP_TYPES:
            problem = _node_problem(node, constants, dims, input_size)
            if problem:
                raise PluginGraphError(f"plugin node {node.name or node.op_type}: {problem}; {_FIX}")
