"""Single-node plugin graphs (our MSDA plugin nodes and NVIDIA's) with random inputs, for the ONNX Runtime
op tests and the hardening probes."""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from detrt.export import PluginNode

SHAPES = [(8, 8), (4, 4)]  # two levels
N, LQ, M, D, P = 2, 5, 2, 8, 3
LEVELS, S = len(SHAPES), sum(h * w for h, w in SHAPES)


def inputs(fused: bool, seed: int = 0, points_per_level: list[int] | None = None) -> dict[str, np.ndarray]:
    """Random feeds of one node: P points on each level, or (N, Lq, M, T, ...) samples for `points_per_level`."""
    generator = np.random.default_rng(seed)
    tables = {"spatial_shapes": np.array(SHAPES, np.int32),
              "level_start_index": np.array([0, SHAPES[0][0] * SHAPES[0][1]], np.int32)}
    value = generator.standard_normal((N, S, M, D)).astype(np.float32)
    samples = (sum(points_per_level),) if points_per_level else (LEVELS, P)
    total = int(np.prod(samples))
    if fused:
        return {"value": value, **tables,
                "reference_points": generator.uniform(0.1, 0.9, (N, LQ, LEVELS, 2)).astype(np.float32),
                "sampling_offsets": generator.standard_normal((N, LQ, M, *samples, 2)).astype(np.float32),
                "attention_logits": generator.standard_normal((N, LQ, M, total)).astype(np.float32)}
    weights = generator.uniform(0, 1, (N, LQ, M, total)).astype(np.float32)
    return {"value": value, **tables,
            "sampling_locations": generator.uniform(-0.1, 1.1, (N, LQ, M, *samples, 2)).astype(np.float32),
            "attention_weights": (weights / weights.sum(axis=-1, keepdims=True)).reshape(N, LQ, M, *samples)}


def plugin_graph(node: PluginNode, feeds: dict[str, np.ndarray], float_type: int, **attributes: object) -> onnx.ModelProto:
    """One plugin node, as the exporter writes it, with float inputs of `float_type` and `attributes`
    (e.g. points_per_level, method)."""
    def info(name: str, array: np.ndarray) -> onnx.ValueInfoProto:
        elem = TensorProto.INT32 if array.dtype == np.int32 else float_type
        return helper.make_tensor_value_info(name, elem, array.shape)

    shape = (N, LQ, M, D) if node.output_rank == 4 else (N, LQ, M * D)
    plugin = helper.make_node(node.name, list(feeds), ["output"], domain=node.domain, name="msda",
                              plugin_version=node.version, plugin_namespace=node.namespace, **attributes)
    graph = helper.make_graph([plugin], "msda", [info(k, v) for k, v in feeds.items()],
                              [helper.make_tensor_value_info("output", float_type, shape)])
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17),
                                                                  helper.make_opsetid(node.domain, 1)])
