"""Graph passes that precision conversion relies on: the topological sort."""
from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from detrt.export.onnx_passes import sort_topologically


def chain(order: list[str]) -> onnx.ModelProto:
    """x -> a -> b -> c -> y, plus an independent d (x -> z), with nodes listed in `order`."""
    nodes = {"a": helper.make_node("Relu", ["x"], ["a"], name="a"), "b": helper.make_node("Neg", ["a"], ["b"], name="b"),
             "c": helper.make_node("Abs", ["b"], ["y"], name="c"), "d": helper.make_node("Exp", ["x"], ["z"], name="d")}
    info = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [2]) for name in ("x", "y", "z")]
    return helper.make_model(helper.make_graph([nodes[n] for n in order], "g", info[:1], info[1:]))


def names(model: onnx.ModelProto) -> list[str]:
    return [node.name for node in model.graph.node]


def test_sort_orders_producers_first_and_keeps_a_valid_order():
    assert names(sort_topologically(chain(["c", "d", "b", "a"]))) == ["d", "a", "b", "c"]
    assert names(sort_topologically(chain(["a", "d", "b", "c"]))) == ["a", "d", "b", "c"]  # already sorted: as is
    onnx.checker.check_model(sort_topologically(chain(["c", "b", "a", "d"])))
    twice = chain(["c", "b", "a", "d"])
    twice.graph.node[1].input.append("a")  # a node reading one producer twice: still placed once
    twice.graph.node[1].op_type = "Add"
    assert names(sort_topologically(twice)) == ["a", "b", "c", "d"]


def test_sort_names_what_cannot_be_ordered():
    model = chain(["a", "b", "c"])
    model.graph.node[1].input[0] = "nowhere"
    with pytest.raises(ValueError, match="node b reads 'nowhere', which nothing produces"):
        sort_topologically(model)
    cyclic = chain(["a", "b", "c"])
    cyclic.graph.node[0].input[0] = "b"
    with pytest.raises(ValueError, match="cycle: 3 nodes cannot be ordered"):
        sort_topologically(cyclic)
