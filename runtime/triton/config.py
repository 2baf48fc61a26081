"""Triton `config.pbtxt` text (protobuf text format of Triton's ModelConfig) and the graph facts it states.

Tensor shapes leave the batch dimension out: with `max_batch_size` > 0 Triton adds it in front.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import onnx
from detrt.detectors import InputError

ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16",
                  onnx.TensorProto.INT64: "TYPE_INT64", onnx.TensorProto.INT32: "TYPE_INT32",
                  onnx.TensorProto.UINT8: "TYPE_UINT8", onnx.TensorProto.BOOL: "TYPE_BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, Triton type and shape without the batch dimension (-1: any)."""

    name: str
    data_type: str
    dims: tuple[int, ...]

    def text(self) -> str:
        """As an element of a config's `input` or `output` list."""
        return f'{{ name: {quote(self.name)} data_type: {self.data_type} dims: [ {", ".join(map(str, self.dims))} ] }}'


def quote(text: str) -> str:
    """A protobuf text-format string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_tensors(proto: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec], bool]:
    """The graph's inputs and outputs as Triton sees them (batch dimension dropped), and whether that
    batch dimension is dynamic in every one of them."""
    initializers = {tensor.name for tensor in proto.graph.initializer}
    dynamic = True
    specs: list[list[TensorSpec]] = [[], []]
    for side, values in enumerate((proto.graph.input, proto.graph.output)):
        for value in values:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            if tensor.elem_type not in ONNX_TO_TRITON:
                raise InputError(f"graph tensor {value.name} has ONNX type {tensor.elem_type}, which Triton configs "
                                 "written by detrt do not cover")
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
            dynamic = dynamic and bool(dims) and dims[0] == -1
            specs[side].append(TensorSpec(value.name, ONNX_TO_TRITON[tensor.elem_type], tuple(dims[1:])))
    return specs[0], specs[1], dynamic


def model_config(name: str, *, backend: str | None = None, platform: str | None = None, max_batch_size: int,
                 inputs: list[TensorSpec], outputs: list[TensorSpec], instances: int | None = None,
                 instance_kind: str = "KIND_CPU", queue_delay_us: int | None = None,
                 parameters: dict[str, str] | None = None, extra: str = "") -> str:
    """A config.pbtxt: scheduling (dynamic batching when `queue_delay_us` is given), instances, I/O."""
    lines = [f"name: {quote(name)}"]
    lines += [f"backend: {quote(backend)}"] if backend else []
    lines += [f"platform: {quote(platform)}"] if platform else []
    lines.append(f"max_batch_size: {max_batch_size}")
    lines.append("input [\n  " + ",\n  ".join(spec.text() for spec in inputs) + "\n]")
    lines.append("output [\n  " + ",\n  ".join(spec.text() for spec in outputs) + "\n]")
    if queue_delay_us is not None:
        lines.append(f"dynamic_batching {{ max_queue_delay_microseconds: {queue_delay_us} }}")
    if instances is not None:
        lines.append(f"instance_group [ {{ kind: {instance_kind} count: {instances} }} ]")
    for key, value in (parameters or {}).items():
        lines.append(f"parameters {{ key: {quote(key)} value {{ string_value: {quote(value)} }} }}")
    return "\n".join(lines) + ("\n" + extra if extra else "") + "\n"


def class_names_parameter(class_names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """The config parameter that tells clients the class name of each label."""
    return {"class_names": json.dumps(list(class_names))}
