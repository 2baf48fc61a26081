"""Fuzzing of the plugin-graph checks and of libdetrt_plugins on random level tables and tensor shapes.

Bounded: a fixed number of examples per property, no deadline per example (the machine is shared),
derandomized so that a failure reproduces. Properties:
- the checks (`level_table_problem`, `validate_plugin_graph`) never raise anything but their own
  error, whatever the table;
- the C library, given any table and shapes, returns or raises ValueError, never crashes (a crash
  would end this process);
- a table the checks accept runs in the library (they refuse no less than it needs).
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from onnx import AttributeProto, TensorProto, helper, numpy_helper

from detrt.export import DETRT_PLUGIN
from detrt.export.plugin_graph import PluginGraphError, level_table_problem, validate_plugin_graph
from detrt.plugins import kernels

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow])
HOSTILE_SIDES = st.one_of(st.integers(-3, 12), st.sampled_from([0, 2**15, 2**16, 2**31 - 1, -(2**31)]))


@st.composite
def coherent_tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    """A level table the kernels can run: positive sides, starts the running sum, S their total."""
    sizes = draw(st.lists(st.tuples(st.integers(1, 8), st.integers(1, 8)), min_size=1, max_size=5))
    areas = [h * w for h, w in sizes]
    return (np.array(sizes, np.int32), np.cumsum([0, *areas[:-1]]).astype(np.int32), sum(areas))


@st.composite
def hostile_tables(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, int]:
    """Random (L, 2) shapes, (L',) starts and S: zero, negative and huge sides, any starts."""
    levels = draw(st.integers(0, 5))
    shapes = np.array([[draw(HOSTILE_SIDES), draw(HOSTILE_SIDES)] for _ in range(levels)], np.int64).reshape(levels, 2)
    areas = [int(h) * int(w) for h, w in shapes]
    starts = np.cumsum([0, *areas[:-1]]).astype(np.int64)[:levels]
    if draw(st.booleans()):
        starts = np.array(draw(st.lists(st.integers(-5, 300), min_size=0, max_size=6)), np.int64)
    num_values = draw(st.one_of(st.integers(0, 400), st.just(sum(areas) if 0 <= sum(areas) <= 400 else 0)))
    return shapes.astype(np.int32, casting="unsafe"), starts.astype(np.int32, casting="unsafe"), num_values


level_tables = st.one_of(coherent_tables(), hostile_tables())


def one_node_graph(shapes: np.ndarray, starts: np.ndarray, attribute: list[int], num_values: int) -> onnx.ModelProto:
    """A plugin node with a constant level table, as exports write it, and a static value input."""
    value = helper.make_tensor_value_info("value", TensorProto.FLOAT, [1, num_values, 2, 4])
    tables = [numpy_helper.from_array(shapes, "spatial_shapes"), numpy_helper.from_array(starts, "level_start_index")]
    node = helper.make_node(DETRT_PLUGIN.name, ["value", "spatial_shapes", "level_start_index", "locations", "weights"],
                            ["output"], domain=DETRT_PLUGIN.domain, name="fuzzed")
    node.attribute.append(helper.make_attribute("spatial_shapes", attribute, attr_type=AttributeProto.INTS))
    graph = helper.make_graph([node], "fuzz", [value], [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)],
                              initializer=tables)
    return helper.make_model(graph)


@FUZZ
@given(level_tables, st.booleans())
def test_graph_check_refuses_cleanly_or_accepts(table: tuple[np.ndarray, np.ndarray, int], attribute_matches: bool) -> None:
    shapes, starts, num_values = table
    num_values = max(num_values, 1)
    attribute = shapes.reshape(-1).tolist() if attribute_matches else [1, 1]
    problem = level_table_problem(shapes, starts, num_values)
    try:
        validate_plugin_graph(one_node_graph(shapes, starts, attribute, num_values))
    except PluginGraphError as error:
        assert "plugin node fuzzed:" in str(error)
    else:
        assert problem is None


@FUZZ
@given(level_tables, st.integers(1, 3), st.integers(1, 3), st.integers(1, 3))
def test_library_returns_or_refuses_never_crashes(table: tuple[np.ndarray, np.ndarray, int], heads: int, points: int,
                                                 queries: int) -> None:
    shapes, starts, num_values = table
    levels = max(len(shapes), 1)
    generator = torch.Generator().manual_seed(0)
    value = torch.randn(1, num_values, heads, 4, generator=generator)
    locations = torch.rand(1, queries, heads, levels, points, 2, generator=generator) * 1.4 - 0.2
    weights = torch.rand(1, queries, heads, levels, points, generator=generator)
    accepted = level_table_problem(shapes, starts, num_values) is None and len(shapes) == levels
    try:
        output = kernels.forward(value, torch.from_numpy(shapes), torch.from_numpy(starts), locations, weights)
    except ValueError:
        assert not accepted, "the library refused a table the graph checks accept"
        return
    event("the library ran")
    assert output.shape == (1, queries, heads * 4) and bool(torch.isfinite(output).all())


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_non_integer_or_wide_tables(dtype: type) -> None:
    shapes = np.array([[4, 4], [2, 2]], dtype)
    problem = level_table_problem(shapes, np.array([0, 16]), 20)
    assert (problem is None) == (dtype is np.int64)
