"""Run plugin graphs in ONNX Runtime: our implementation of the MSDA plugin nodes for the CPU.

Route: onnxruntime-extensions Python custom ops that call ``libdetrt_plugins`` (the same C kernels
the TensorRT plugin calls, through `detrt.plugins.kernels`). It needs no ONNX Runtime C++ headers or
build, and it checks the very kernels that ship. onnxruntime-extensions runs Python ops only in the
domain ``ai.onnx.contrib``, so sessions are made from a copy of the graph whose plugin nodes are
moved to that domain; the file on disk keeps the domain TensorRT expects.

Plugin nodes of FP16 graphs run the same C kernel between casts (float16 inputs widened to float32,
the output rounded to float16 once): the arithmetic of the CUDA kernel's fp16 path, which reads
float16, accumulates in float32 and rounds the output once. Mixed-precision nodes (float16 value,
float32 locations and weights) keep their float32 inputs as they are, as the kernel reads them.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import onnx
import torch

from .deform_conv_nodes import DEFORM_CONV_PLUGIN
from .msda_nodes import (
    DEFAULT_METHOD,
    DETRT_FUSED_PLUGIN,
    DETRT_PLUGIN,
    METHOD_ATTRIBUTE,
    NVIDIA_PLUGIN,
    POINTS_ATTRIBUTE,
)
from .onnx_passes import element_types, plugin_nodes
from .onnx_schemas import register_plugin_schemas
from .plugin_graph import PluginGraphError, level_table_problem, validate_plugin_graph

CONTRIB_DOMAIN = "ai.onnx.contrib"
_LEVEL_INPUTS = (1, 2)  # spatial_shapes, level_start_index: int32 in every form
NODE_NAME_ATTRIBUTE = "detrt_node_name"  # set on the contrib copy's nodes so that errors name the node
# What plugin ops raised during the current `PluginSession.run`: an exception must never leave an
# onnxruntime-extensions Python op (it aborts the process), so the op records it and returns.
_failures: list[BaseException] = []
_DEFERRED = (signal.SIGINT, signal.SIGTERM)


def _msda(value: np.ndarray, spatial_shapes: np.ndarray, level_start_index: np.ndarray, locations: np.ndarray,
          weights: np.ndarray, **sampling: object) -> np.ndarray:
    from detrt.plugins import kernels

    output = kernels.forward(torch.from_numpy(value), torch.from_numpy(spatial_shapes),
                             torch.from_numpy(level_start_index), torch.from_numpy(locations),
                             torch.from_numpy(weights), **sampling)
    return output.numpy()


def _sampling(attributes: dict[str, str]) -> dict[str, object]:
    """The kernels' `points_per_level` and `method` keywords from the contrib copy's string attributes."""
    points = attributes.get(POINTS_ATTRIBUTE, "")
    return {"points_per_level": [int(p) for p in points.split()] or None,
            "method": attributes.get(METHOD_ATTRIBUTE) or DEFAULT_METHOD}


def _guarded(body: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """`body` as a plugin op that never raises: the level table is checked first, and any error (or
    Ctrl-C) is recorded for `PluginSession.run` to raise once ONNX Runtime has returned."""
    @functools.wraps(body)
    def op(value, spatial_shapes, level_start_index, *rest, **attributes):  # noqa: ANN001, ANN202
        name = attributes.get(NODE_NAME_ATTRIBUTE) or body.__name__
        try:
            problem = level_table_problem(spatial_shapes, level_start_index, value.shape[1] if value.ndim == 4 else None)
            if problem:
                raise PluginGraphError(f"plugin node {name}: {problem}")
            return body(value, spatial_shapes, level_start_index, *rest, **_sampling(attributes))
        except PluginGraphError as error:
            _failures.append(error)
        except Exception as error:
            _failures.append(PluginGraphError(f"plugin node {name}: {error}"))
        except BaseException as error:  # KeyboardInterrupt, SystemExit: raised again after the run
            _failures.append(error)
        return np.zeros(0, np.float32)
    return op


@functools.cache
def register_custom_ops() -> None:
    """Register the Python implementations of the MSDA plugin nodes with onnxruntime-extensions (once)."""
    from onnxruntime_extensions import PyCustomOpDef, onnx_op

    float_, int32 = PyCustomOpDef.dt_float, PyCustomOpDef.dt_int32
    strings = ("plugin_version", "plugin_namespace", NODE_NAME_ATTRIBUTE, POINTS_ATTRIBUTE, METHOD_ATTRIBUTE)
    signature = dict(inputs=[float_, int32, int32, float_, float_], outputs=[float_],
                     attrs=dict.fromkeys(strings, PyCustomOpDef.dt_string))

    @onnx_op(op_type=DETRT_PLUGIN.name, **signature)
    @_guarded
    def detrt_msda(value, spatial_shapes, level_start_index, locations, weights, **sampling):  # noqa: ANN001, ANN003, ANN202
        return _msda(value, spatial_shapes, level_start_index, locations, weights, **sampling)

    @onnx_op(op_type=DETRT_FUSED_PLUGIN.name, **{**signature, "inputs": [float_, int32, int32, float_, float_, float_]})
    @_guarded
    def detrt_msda_fused(value, spatial_shapes, level_start_index, references, offsets, logits,  # noqa: ANN001, ANN202
                         **sampling):  # noqa: ANN003
        from detrt.plugins import kernels

        tensors = [torch.from_numpy(a) for a in (value, spatial_shapes, level_start_index, references, offsets, logits)]
        return kernels.forward_fused(*tensors, **sampling).numpy()

    @onnx_op(op_type=NVIDIA_PLUGIN.name, **signature)
    @_guarded
    def nvidia_msda(value, spatial_shapes, level_start_index, locations, weights, **sampling):  # noqa: ANN001, ANN003, ANN202
        n, _, m, d = value.shape  # the graph validator refuses sampling attributes on NVIDIA's node
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


def _as_string_attributes(node: onnx.NodeProto) -> None:
    """Give an MSDA node's copy its sampling attributes as strings, the only list-free type
    onnxruntime-extensions reads: `points_per_level` as "3 6 3" ("" when absent), `method` always."""
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    points = " ".join(str(p) for p in attributes.get(POINTS_ATTRIBUTE, []))
    method = attributes.get(METHOD_ATTRIBUTE, DEFAULT_METHOD.encode()).decode()
    kept = [a for a in node.attribute if a.name not in (POINTS_ATTRIBUTE, METHOD_ATTRIBUTE)]
    del node.attribute[:]
    node.attribute.extend([*kept, onnx.helper.make_attribute(POINTS_ATTRIBUTE, points),
                           onnx.helper.make_attribute(METHOD_ATTRIBUTE, method)])


def _element_types(model: onnx.ModelProto, nodes: list[onnx.NodeProto]) -> dict[str, int]:
    types = element_types(model)
    if any(name not in types for node in nodes for name in node.input):
        register_plugin_schemas()
        types = element_types(onnx.shape_inference.infer_shapes(model))
    return types


def _run_in_float32(graph: onnx.GraphProto, node: onnx.NodeProto, types: dict[str, int]) -> None:
    """Cast `node`'s float16 inputs to float32 and its output back to float16 (int32 level inputs, and
    the float32 inputs of a mixed-precision node, stay)."""
    float16, float32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    index = list(graph.node).index(node)
    casts = []
    for position, name in enumerate(node.input):
        if position not in _LEVEL_INPUTS and types.get(name) == float16:
            node.input[position] = f"{name}/{node.name}/float32"
            casts.append(onnx.helper.make_node("Cast", [name], [node.input[position]], to=float32,
                                               name=f"{node.name}/input{position}/float32"))
    output = node.output[0]
    node.output[0] = f"{output}/float32"
    graph.node.insert(index + 1, onnx.helper.make_node("Cast", [node.output[0]], [output], to=float16,
                                                       name=f"{node.name}/output/float16"))
    for cast in reversed(casts):
        graph.node.insert(index, cast)


def contrib_copy(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of `model` that ONNX Runtime can run: MSDA plugin nodes moved to the domain
    onnxruntime-extensions runs (float16 ones between casts), NVIDIA's DCNv2 plugin nodes turned into
    ONNX DeformConv."""
    model = copy.deepcopy(model)
    nodes = [node for node in plugin_nodes(model) if node.op_type != DEFORM_CONV_PLUGIN.name]
    types = _element_types(model, nodes)
    for node in [node for node in nodes if types.get(node.input[0]) == onnx.TensorProto.FLOAT16]:
        _run_in_float32(model.graph, node, types)
    for node in plugin_nodes(model):
        if node.op_type == DEFORM_CONV_PLUGIN.name:
            _as_deform_conv(node)
    for node in nodes:
        node.domain = CONTRIB_DOMAIN
        _as_string_attributes(node)
        node.attribute.append(onnx.helper.make_attribute(NODE_NAME_ATTRIBUTE, node.name or node.op_type))
    if nodes and not any(o.domain == CONTRIB_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(CONTRIB_DOMAIN, 1))
    return model


@contextlib.contextmanager
def _signals_after() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM back until the block ends (main thread only), then deliver them to the
    previous handlers: a KeyboardInterrupt or SystemExit raised inside a plugin op, within ONNX Runtime,
    would abort the process."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {number: signal.signal(number, lambda signum, _: received.append(signum))
                for number in _DEFERRED if signal.getsignal(number) is not None}  # None: not ours to restore
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    for number in dict.fromkeys(received):
        if callable(previous[number]):
            previous[number](number, None)
        elif previous[number] == signal.SIG_DFL:
            signal.raise_signal(number)


class PluginSession:
    """An ONNX Runtime session of a plugin graph whose `run` raises what the plugin ops recorded (a
    `PluginGraphError` naming the node, or Ctrl-C) instead of letting it abort the process."""

    def __init__(self, session) -> None:  # noqa: ANN001 (onnxruntime.InferenceSession)
        self.session = session

    def __getattr__(self, name: str) -> object:
        return getattr(self.session, name)

    def run(self, *args, **kwargs) -> list:  # noqa: ANN002, ANN003 (InferenceSession.run's arguments)
        """InferenceSession.run, with the plugin ops' errors raised here."""
        _failures.clear()
        with _signals_after():
            try:
                outputs = self.session.run(*args, **kwargs)
            except Exception:
                if not _failures:
                    raise
                outputs = None
        if _failures:
            failure = _failures[0]
            _failures.clear()
            raise failure
        return outputs


def create_session(model: str | Path | onnx.ModelProto, providers: list[str] | None = None,
                   threads: int = 0):  # noqa: ANN201 (onnxruntime.InferenceSession or PluginSession)
    """An ONNX Runtime session for any detrt graph; plugin graphs are validated first and get our MSDA
    implementation, in a `PluginSession`."""
    import onnxruntime as ort

    proto = model if isinstance(model, onnx.ModelProto) else onnx.load(str(model))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3  # errors only: FP16 Q/DQ graphs log a warning per unfoldable float16 Mul
    if not plugin_nodes(proto):
        return ort.InferenceSession(proto.SerializeToString(), options, providers=providers or ["CPUExecutionProvider"])
    from onnxruntime_extensions import get_library_path

    validate_plugin_graph(proto)
    register_custom_ops()
    options.register_custom_ops_library(get_library_path())
    proto = contrib_copy(proto)
    return PluginSession(ort.InferenceSession(proto.SerializeToString(), options,
                                              providers=providers or ["CPUExecutionProvider"]))
