"""The per-level fields of libdetrt_trt_plugins through NVIDIA's real TensorRT-RTX ONNX parser and builder (on
the CPU, no GPU): a node with the INTS attribute `points_per_level` and the STRING attribute `method` reaches
our creator (the parser passes only the fields getFieldNames lists), rank-5 samples shape-check and the
engine builds; an attribute that lies about T, or an unknown method, is refused with our message naming the
node, the attribute and both numbers.

Marked `rtx`: skipped where `import tensorrt_rtx` fails (the CI installs the `rtx` extra).
"""
from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from detrt.export import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, PluginNode
from detrt.runtime.backends.tensorrt.flavour import RTX, import_tensorrt
from detrt.runtime.backends.tensorrt.plugins import load_plugins

pytestmark = pytest.mark.rtx

N, LQ, M, D = 1, 5, 2, 8
LEVELS, COUNTS = [(8, 8), (4, 4), (2, 2)], [3, 6, 3]
S, T = sum(h * w for h, w in LEVELS), sum(COUNTS)


def per_level_graph(node: PluginNode, samples: int, method: str) -> onnx.ModelProto:
    """One plugin node with points_per_level, method and spatial_shapes, samples (N, Lq, M, `samples`, ...)."""
    def info(name: str, shape: tuple[int, ...], elem: int = TensorProto.FLOAT) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, elem, shape)

    fused = node is DETRT_FUSED_PLUGIN
    inputs = [info("value", (N, S, M, D)), info("spatial_shapes", (len(LEVELS), 2), TensorProto.INT32),
              info("level_start_index", (len(LEVELS),), TensorProto.INT32)]
    inputs += [info("reference_points", (N, LQ, len(LEVELS), 4))] if fused else []
    inputs += [info("samples", (N, LQ, M, samples, 2)), info("weights", (N, LQ, M, samples))]
    plugin = helper.make_node(node.name, [i.name for i in inputs], ["output"], domain=node.domain, name="msda_7",
                              plugin_version=node.version, plugin_namespace=node.namespace,
                              spatial_shapes=[side for level in LEVELS for side in level], points_per_level=COUNTS,
                              method=method)
    graph = helper.make_graph([plugin], "msda", inputs, [info("output", (N, LQ, M * D))])
    return helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 17),
                                                                  helper.make_opsetid(node.domain, 1)])


class Session:
    """TensorRT-RTX with our plugins loaded and one logger that keeps the errors. One logger for every parse:
    TensorRT keeps the first logger it is given for messages of plugins created later (setLoggerFinder)."""

    def __init__(self) -> None:
        self.trt = trt = import_tensorrt(RTX).module
        self.errors: list[str] = []
        errors = self.errors

        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)

            def log(self, severity, message) -> None:  # noqa: ANN001
                if severity <= trt.ILogger.Severity.ERROR:
                    errors.append(message)

        self.logger = Logger()
        load_plugins(trt, self.logger, "plugin")

    def parse(self, model: onnx.ModelProto) -> tuple[bool, object, object, list[str]]:
        """(parsed?, builder, network, the errors logged while parsing)."""
        trt = self.trt
        self.errors.clear()
        builder = trt.Builder(self.logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        self.parser = trt.OnnxParser(network, self.logger)  # kept alive with the network
        ok = self.parser.parse(model.SerializeToString())
        return ok, builder, network, list(self.errors)


@pytest.fixture(scope="module")
def rtx() -> Session:
    return Session()


@pytest.mark.parametrize("node", [DETRT_PLUGIN, DETRT_FUSED_PLUGIN], ids=lambda node: node.name)
def test_per_level_node_parses_and_builds(rtx: Session, node: PluginNode) -> None:
    ok, builder, network, errors = rtx.parse(per_level_graph(node, T, "discrete"))
    assert ok, errors
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    plugins = [layer for layer in layers if layer.type == rtx.trt.LayerType.PLUGIN_V3]
    assert len(plugins) == 1 and tuple(plugins[0].get_output(0).shape) == (N, LQ, M * D)
    assert builder.build_serialized_network(network, builder.create_builder_config()) is not None, errors


@pytest.mark.parametrize("node", [DETRT_PLUGIN, DETRT_FUSED_PLUGIN], ids=lambda node: node.name)
def test_attributes_that_lie_are_refused_with_both_numbers(rtx: Session, node: PluginNode) -> None:
    ok, _, _, errors = rtx.parse(per_level_graph(node, T - 1, "discrete"))
    axis = "4 (sampling_offsets)" if node is DETRT_FUSED_PLUGIN else "3 (sampling_locations)"
    expected = (f"{node.name} (layer 'msda_7'): the points_per_level attribute sums to {T} samples but input "
                f"{axis} axis 3 is T = {T - 1}")
    assert not ok and any(expected in error for error in errors), errors
    ok, _, _, errors = rtx.parse(per_level_graph(node, T, "nearest"))
    assert not ok and any("field 'method' must be \"bilinear\" or \"discrete\", got \"nearest\"" in error
                          for error in errors), errors
