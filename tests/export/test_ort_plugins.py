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


@pytest.mark.parametrize("node", [DETRT_PLUGIN, DETRT_FUSED_PLUGIN], ids=lambda n: n.name)
@pytest.mark.parametrize("method", ["bilinear", "discrete"])
def test_points_per_level_and_method_reach_the_kernel(node, method):
    """Nodes with a points_per_level list (and the discrete method) run the kernel with those settings:
    the output equals the kernel's own call and the PyTorch reference within fp32 rounding (1e-5)."""
    from detrt.detectors.models.msda_op import ms_deform_attn_fused, ms_deform_attn_reference

    points = [2, 5]
    feeds = inputs(fused=node is DETRT_FUSED_PLUGIN, points_per_level=points)
    attributes = {"points_per_level": points, **({"method": method} if method != "bilinear" else {})}
    output = create_session(plugin_graph(node, feeds, TensorProto.FLOAT, **attributes)).run(None, feeds)[0]
    tensors = [torch.from_numpy(a) for a in feeds.values()]
    call = kernels.forward_fused if node is DETRT_FUSED_PLUGIN else kernels.forward
    np.testing.assert_array_equal(output, call(*tensors, points_per_level=points, method=method).numpy())
    value, shapes, _, *samples = tensors
    if node is DETRT_FUSED_PLUGIN:
        expected = ms_deform_attn_fused(*tensors, impl="reference", points_per_level=points, method=method)
    else:
        expected = ms_deform_attn_reference(value, shapes, *samples, points_per_level=points, method=method)
    np.testing.assert_allclose(output, expected.numpy(), rtol=1e-5, atol=1e-5)


LIES = {  # attributes that contradict the node's inputs (two levels, locations with T = 7) -> the message
    "fewer entries": ({"points_per_level": [7]},
                      r"points_per_level attribute has 1 entries \[7\], but spatial_shapes has 2 levels"),
    "other sum": ({"points_per_level": [3, 5]},
                  r"points_per_level attribute \[3, 5\] sums to T = 8, but its sampling_locations input has T = 7"),
    "zero points": ({"points_per_level": [0, 7]}, r"points_per_level attribute \[0, 7\] must hold one count >= 1"),
    "unknown method": ({"points_per_level": [2, 5], "method": "nearest"},
                       r"method attribute 'nearest' is not one of \('bilinear', 'discrete'\)"),
    "no list for rank 5": ({}, r"sampling_locations input has rank 5, but without a points_per_level attribute"),
}


@pytest.mark.parametrize("lie", LIES)
def test_attributes_that_lie_about_the_inputs_are_refused(lie):
    from detrt.export.plugin_graph import PluginGraphError

    attributes, message = LIES[lie]
    feeds = inputs(fused=False, points_per_level=[2, 5])
    with pytest.raises(PluginGraphError, match=f"plugin node msda: its {message}"):
        create_session(plugin_graph(DETRT_PLUGIN, feeds, TensorProto.FLOAT, **attributes))


def test_nvidia_node_with_sampling_attributes_is_refused():
    from detrt.export.plugin_graph import PluginGraphError

    feeds = inputs(fused=False)
    with pytest.raises(PluginGraphError, match=r"plugin node msda: has \['method'\] attributes, which TensorRT's"):
        create_session(plugin_graph(NVIDIA_PLUGIN, feeds, TensorProto.FLOAT, method="discrete"))
