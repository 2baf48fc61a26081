"""ONNX Runtime's implementation of the plugin nodes (`detrt.export.ort_plugins`) at both precisions.

A float16 plugin node runs the float32 C kernel between casts: float16 inputs widened exactly, the
output rounded to float16 once, which is the arithmetic of the CUDA kernel's fp16 path (fp16 reads,
fp32 accumulation, one rounding). So the expected output is the float32 kernel on the same float16
values, rounded: equality is exact, no tolerance.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from onnx import TensorProto

from detrt.export import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, NVIDIA_PLUGIN, PluginNode
from detrt.export.ort_plugins import create_session
from detrt.plugins import kernels
from support.plugin_graphs import D, LQ, M, N, inputs, plugin_graph

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
