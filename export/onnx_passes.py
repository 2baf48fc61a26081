"""Graph passes after tracing: plugin attributes, shapes, simplification, checks, loading and atomic saving."""
from __future__ import annotations

from pathlib import Path

import onnx
from detrt.detectors import InputError, MissingFileError, write_bytes_atomic
from onnx import numpy_helper

from .deform_conv_nodes import DEFORM_CONV_PLUGIN
from .msda_nodes import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, PLUGIN_NODES

# ONNX Runtime 1.20+ reads IR version 10; newer onnx packages write higher versions by default.
MAX_IR_VERSION = 10


def plugin_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """The nodes that a TensorRT plugin implements (MSDA, ours and NVIDIA's; NVIDIA's DCNv2)."""
    names = {node.name for node in (*PLUGIN_NODES.values(), DETRT_FUSED_PLUGIN, DEFORM_CONV_PLUGIN)}
    return [node for node in model.graph.node if node.op_type in names]


def constant_values(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    """Initializers and Constant-node outputs of `model`, by name."""
    values = {tensor.name: tensor for tensor in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            values[node.output[0]] = node.attribute[0].t
    return values


def add_level_shapes(model: onnx.ModelProto) -> None:
    """Copy each detrt plugin node's constant level table into its ``spatial_shapes`` attribute, so the
    plugin knows the levels on the host without reading the device tensor (see plugins/msda_tensorrt/README.md)."""
    constants = constant_values(model)
    for node in plugin_nodes(model):
        if node.op_type not in (DETRT_PLUGIN.name, DETRT_FUSED_PLUGIN.name) or any(a.name == "spatial_shapes" for a in node.attribute):
            continue
        if node.input[1] not in constants:
            raise InputError(f"the spatial_shapes input of {node.name} is not a constant; the detrt plugin needs "
                             "a fixed input size (export with --size HxW)")
        shapes = numpy_helper.to_array(constants[node.input[1]]).reshape(-1).tolist()
        node.attribute.append(onnx.helper.make_attribute("spatial_shapes", [int(v) for v in shapes]))


def infer_shapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX shape inference; plugin outputs keep the shapes the exporter recorded for them."""
    return onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False, data_prop=True)


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    """Constant folding and graph clean-up with onnxslim (custom plugin nodes are kept as they are)."""
    import onnxslim

    return onnxslim.slim(model)


def element_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type (onnx.TensorProto enum) of every tensor whose type the graph records."""
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in (*graph.input, *graph.value_info, *graph.output)}
    return types | {t.name: t.data_type for t in graph.initializer}


def finalize(model: onnx.ModelProto) -> None:
    """Clamp the IR version for current runtimes and run the ONNX checker."""
    model.ir_version = min(model.ir_version, MAX_IR_VERSION)
    onnx.checker.check_model(model)


def set_output_shapes(model: onnx.ModelProto, shapes: list[tuple[int | None, ...]]) -> None:
    """Give the graph outputs their known static sizes (None: the dynamic ``batch`` dimension)."""
    for output, shape in zip(model.graph.output, shapes):
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for size in shape:
            dim = dims.add()
            if size is None:
                dim.dim_param = "batch"
            else:
                dim.dim_value = size


def missing_shapes(model: onnx.ModelProto) -> list[str]:
    """Tensors produced by nodes whose rank is unknown after shape inference (empty when all are known)."""
    known = {info.name for info in (*model.graph.value_info, *model.graph.output, *model.graph.input)
             if info.type.tensor_type.HasField("shape")}
    known |= {tensor.name for tensor in model.graph.initializer}
    return [name for node in model.graph.node for name in node.output if name and name not in known]


def load_onnx(path: str | Path, load_external_data: bool = True) -> onnx.ModelProto:
    """The ONNX at `path`, with clear errors for a missing or corrupt file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"model {path} does not exist; export one with `detrt export`")
    try:
        return onnx.load(str(path), load_external_data=load_external_data)
    except Exception as error:  # protobuf DecodeError and friends carry no hint of the file
        raise InputError(f"{path} is not a readable ONNX file ({type(error).__name__}: {error}); "
                         "export it again with `detrt export`") from error


def save_atomic(model: onnx.ModelProto, path: str | Path) -> Path:
    """Write `model` to `path` atomically: never a half-written file, never a good one replaced by one."""
    return write_bytes_atomic(path, model.SerializeToString())
