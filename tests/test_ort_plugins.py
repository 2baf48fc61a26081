"""ONNX Runtime's implementation of the plugin nodes (`detrt.export.ort_plugins`) at both precisions.

A float16 plugin node runs the float32 C kernel between casts: float16 inputs widened exactly, the
output rounded to float16 once, which is the arithmetic of the CUDA kernel's fp16 path (fp16 reads,
fp32 accumulation, one rounding). So the expected output is the float32 kernel on the same float16
values, rounded: equality is exact, no tolerance.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from detrt.export import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, NVIDIA_PLUGIN, PluginNode
from detrt.export.ort_plugins import create_session
from detrt.plugins import kernels

SHAPES = [(8, 8), (4, 4)]  # two levels
N, LQ, M, D, P = 2, 5, 2, 8, 3
LEVELS, S = len(SHAPES), sum(h * w for h, w in SHAPES)


def inputs(fused: bool, seed: int = 0) -> dict[str, np.ndarray]:
    generator = np.random.default_rng(seed)
    tables = {"spatial_shapes": np.array(SHAPES, np.int32),
              "level_start_index": np.array([0, SHAPES[0][0] * SHAPES[0][1]], np.int32)}
    value = generator.standard_normal((N, S, M, D)).astype(np.float32)
    if fused:
        return {"value": value, **tables,
                "reference_points": generator.uniform(0.1, 0.9, (N, LQ, LEVELS, 2)).astype(np.float32),
                "sampling_offsets": generator.standard_normal((N, LQ, M, LEVELS, P, 2)).astype(np.float32),
                "attention_logits": generator.standard_normal((N, LQ, M, LEVELS * P)).astype(np.float32)}
    weights = generator.uniform(0, 1, (N, LQ, M, LEVELS, P)).astype(np.float32)
    return {"value": value, **tables,
            "sampling_locations": generator.uniform(-0.1, 1.1, (N, LQ, M, LEVELS, P, 2)).astype(np.float32),
            "attention_weights": weights / weights.sum(axis=(3, 4), keepdims=True)}


def plugin_graph(node: PluginNode, feeds: dict[str, np.ndarray], float_type: int) -> onnx.ModelProto:
    """One plugin node, as the exporter writes it, with float inputs of `float_type`."""
    def info(name: str, array: np.ndarray) -> onnx.ValueInfoProto:
        elem = TensorProto.INT32 if array.dtype == np.int32 else float_type
        return helper.make_tensor_value_info(name, elem, array.shape)

    shape = (N, LQ, M, D) if node.output_rank == 4 else (N, LQ, M * D)
    plugin = helper.make_node(node.name, list(feeds), ["output"], domain=node.domain, name="msda",
                              plugin_version=node.version, plugin_namespace=node.namespace)
    graph = helper.make_graph([plugin], "msda", [info(k, v) for k, v in feeds.items()],
                              [helper.make_tensor_value_info("output", float_type, shape)])
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17),
                                                                  helper.make_opsetid(node.domain, 1)])


def kernel(node: PluginNode, feeds: dict[str, np.ndarray]) -> np.ndarray:
    tensors = [torch.from_numpy(a) for a in feeds.values()]
    output = (kernels.forward_fused if node is DETRT_FUSED_PLUGIN else kernels.forward)(*tensors).numpy()
    return output.reshape(N, LQ, M, D) if node.output_rank == 4 else output


@pytest.mark.parametrize("node", [DETRT_PLUGIN, DETRT_FUSED_PLUGIN, NVIDIA_PLUGIN], ids=lambda n: n.name)
def test_plugin_nodes_run_at_both_precisions(node):
    feeds = inputs(fused=node is DETRT_FUSED_PLUGIN)
    single = create_session(plugin_graph(node, feeds, TensorProto.FLOAT)).run(None, feeds)[0]
    np.testing.assert_array_equal(single, kernel(node, feeds))

    half_feeds = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in feeds.items()}
    half = create_session(plugin_graph(node, half_feeds, TensorProto.FLOAT16)).run(None, half_feeds)[0]
    assert half.dtype == np.float16 and half.shape == single.shape
    widened = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in half_feeds.items()}
    np.testing.assert_array_equal(half, kernel(node, widened).astype(np.float16))
    assert 0 < np.abs(half.astype(np.float32) - single).max() < 1e-2  # float16 really rounds, and only that


def test_graph_on_disk_keeps_the_tensorrt_domain():
    feeds = inputs(fused=False)
    model = plugin_graph(DETRT_PLUGIN, feeds, TensorProto.FLOAT16)
    create_session(model)
    assert [(n.op_type, n.domain) for n in model.graph.node] == [(DETRT_PLUGIN.name, DETRT_PLUGIN.domain)]
