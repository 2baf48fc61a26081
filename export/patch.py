"""`detrt patch`: replace the MSDA subgraphs of an ONNX file made by other code by detrt plugin nodes.

The file is run once in ONNX Runtime on random input to find the subgraphs (`msda_subgraphs`). Each is
replaced by one ``DetrtMultiscaleDeformableAttn`` node fed by the subgraph's own value, locations and
weights, with int32 level inputs and the ``spatial_shapes`` attribute; the nodes only it used are
removed. The patched graph is then run on the same input beside the original, with detrt's kernels for
the plugin nodes, and it is written (atomically) only when every output agrees within `TOLERANCE`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from detrt.detectors import InputError
from onnx import numpy_helper

from .msda_nodes import DETRT_FUSED_PLUGIN, DETRT_PLUGIN
from .msda_subgraphs import Findings, MsdaSubgraph, candidate_tensors, find_msda_subgraphs
from .onnx_passes import add_level_shapes, constant_values, finalize, load_onnx, save_atomic
from .onnx_schemas import register_plugin_schemas
from .ort_plugins import create_session
from .plugin_graph import validate_plugin_graph

# Patched against original, every output: |a - b| <= TOLERANCE * (1 + |b|). The plugin's kernel and
# GridSample sum the same fp32 products in another order (about 1e-6 here); 1e-4 leaves room for the
# layers after MSDA to grow that difference, and is far below any change a wrong layout would make.
TOLERANCE = 1e-4
_DYNAMIC_SIZE = 1  # a symbolic batch dimension is given this size for the check


class PatchError(InputError):
    """The file cannot be patched: nothing to replace, or the patched graph computes something else."""


@dataclass
class PatchReport:
    """What `patch_onnx` did."""

    replaced: list[dict] = field(default_factory=list)  # per plugin node: its name and the subgraph it replaced
    unsupported: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    max_difference: float = 0.0  # largest |patched - original| over every output of the check run
    removed_nodes: int = 0
    not_fused: list[str] = field(default_factory=list)  # --fused: subgraphs given the plain node, and why
    fixed_inputs: dict[str, list] = field(default_factory=dict)  # inputs whose symbolic sizes were fixed

    def lines(self) -> list[str]:
        """One line per plugin node: its name, what it replaced and the problem's sizes."""
        return [f"{r['node']}: {len(r['levels'])} levels {r['levels']}, points {r['points_per_level']}, "
                f"{r['heads']} heads x {r['channels_per_head']} channels, {r['queries']} queries; "
                f"replaced GridSample {', '.join(r['grid_samples'])}" for r in self.replaced]

    def to_dict(self) -> dict:
        """JSON-friendly summary (the CLI prints it)."""
        return {"replaced": self.replaced,
                "unsupported": self.unsupported, "untouched_grid_samples": self.untouched,
                "not_fused": self.not_fused, "fixed_inputs": self.fixed_inputs, "removed_nodes": self.removed_nodes, "max_output_difference": self.max_difference,
                "tolerance": TOLERANCE}


def random_feeds(model: onnx.ModelProto, seed: int = 0,
                 shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """One random input per graph input: floats in [0, 1), integers in [1, 640] (sizes), booleans False.
    A symbolic first (batch) dimension gets size 1; other symbolic dimensions (height, width) fix the
    feature-map sizes the plugin node is built for, so they must be given in `shapes`."""
    shapes = dict(shapes or {})
    initializers = {t.name for t in model.graph.initializer}
    inputs = [info for info in model.graph.input if info.name not in initializers]
    unknown = sorted(set(shapes) - {info.name for info in inputs})
    if unknown:
        raise PatchError(f"--shape names {unknown}, which the model does not take; its inputs are "
                         f"{[info.name for info in inputs]}")
    generator = np.random.default_rng(seed)
    feeds = {}
    for info in inputs:
        tensor = info.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in tensor.shape.dim]
        shape = _input_shape(info.name, dims, shapes.get(info.name))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[info.name] = generator.random(shape).astype(dtype)
        elif np.issubdtype(dtype, np.integer):
            feeds[info.name] = generator.integers(1, 641, shape).astype(dtype)
        else:
            feeds[info.name] = np.zeros(shape, dtype)
    return feeds


def _input_shape(name: str, dims: list[int | str], given: tuple[int, ...] | None) -> list[int]:
    example = "x".join(str(d) if isinstance(d, int) else ("1" if i == 0 else "640") for i, d in enumerate(dims))
    if given is None:
        symbolic = [d for d in dims[1:] if not isinstance(d, int)]
        if symbolic:
            raise PatchError(f"input {name} {dims} has symbolic sizes {symbolic} beyond the batch; the plugin node is "
                             f"built for fixed feature-map sizes: give the size the model runs at with --shape "
                             f"{name}={example} (the patched file is fixed to it)")
        return [d if isinstance(d, int) else _DYNAMIC_SIZE for d in dims]
    if len(given) != len(dims) or any(isinstance(d, int) and d != g for d, g in zip(dims, given)):
        raise PatchError(f"--shape {name}={'x'.join(map(str, given))} does not fit the input's shape {dims}")
    return list(given)


def _fix_input_sizes(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, list]:
    """Give `model`'s symbolic input sizes beyond the batch the sizes of `feeds` (what its plugin nodes'
    level tables were built for); returns the inputs changed, with their shapes (the batch stays as it was)."""
    fixed = {}
    for info in model.graph.input:
        dims = info.type.tensor_type.shape.dim
        if info.name not in feeds or all(d.HasField("dim_value") for d in dims[1:]):
            continue
        for dim, size in zip(dims[1:], feeds[info.name].shape[1:]):
            dim.Clear()
            dim.dim_value = int(size)
        fixed[info.name] = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in dims]
    return fixed


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray], extra: list[str] = ()) -> dict[str, np.ndarray]:
    """Every graph output, and the tensors `extra`, of one ONNX Runtime run (plugin nodes on detrt's kernels)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    present = {o.name for o in probe.graph.output}
    probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in extra if name not in present)
    session = create_session(probe)
    names = [o.name for o in probe.graph.output]
    return dict(zip(names, session.run(names, feeds)))


class _NodeBuilder:
    """Adds the nodes and constants that replace one subgraph, named under one prefix."""

    def __init__(self, graph: onnx.GraphProto, prefix: str) -> None:
        self.graph, self.prefix, self.nodes = graph, prefix, []

    def constant(self, array: np.ndarray, role: str) -> str:
        self.graph.initializer.append(numpy_helper.from_array(array, f"{self.prefix}/{role}"))
        return f"{self.prefix}/{role}"

    def node(self, op_type: str, inputs: list[str], role: str) -> str:
        output = f"{self.prefix}/{role}_output"
        self.nodes.append(onnx.helper.make_node(op_type, inputs, [output], name=f"{self.prefix}/{role}"))
        return output

    def reshape(self, tensor: str, shape: list[int], role: str) -> str:
        """`tensor` reshaped; 0 keeps that dimension (N and Lq stay dynamic where they were)."""
        return self.node("Reshape", [tensor, self.constant(np.array(shape, np.int64), f"{role}_shape")], role)


def _plugin_nodes(subgraph: MsdaSubgraph, index: int, graph: onnx.GraphProto) -> list[onnx.NodeProto]:
    """The nodes that replace `subgraph` (by the fused node where its fused inputs were found): level-table
    constants, reshapes to the plugin's input ranks, the plugin."""
    fused = subgraph.fused
    plugin = DETRT_FUSED_PLUGIN if fused else DETRT_PLUGIN
    build = _NodeBuilder(graph, f"{_common_prefix(subgraph.grid_samples) or f'msda_{index}'}/{plugin.name}")
    starts = np.cumsum([0] + [h * w for h, w in subgraph.level_shapes][:-1])
    levels, points, total = len(subgraph.points), subgraph.points, sum(subgraph.points)
    uniform = len(set(points)) == 1
    # uniform counts: the (N, Lq, M, L, P[, 2]) inputs; counts per level: (N, Lq, M, T[, 2]) and the attribute
    per_sample = [0, 0, 0, levels, points[0]] if uniform else [0, 0, 0, total]
    attributes = {} if uniform else {"points_per_level": points}
    if fused:
        references = build.reshape(fused.reference_points, [0, 0, fused.reference_levels, fused.reference_dim],
                                   "reference_points")
        if fused.reference_levels != levels:  # one reference for every level: repeated per level
            references = build.node("Expand", [references, build.constant(np.array([1, 1, levels, 1], np.int64),
                                                                           "levels")], "reference_points_per_level")
        samples = [references, build.reshape(fused.offsets, [*per_sample, 2], "sampling_offsets"),
                   build.reshape(fused.logits, [0, 0, 0, total], "attention_logits")]
    else:
        locations = subgraph.locations
        if locations is None:
            locations = build.constant(subgraph.constant_locations, "sampling_locations_constant")
        weights = subgraph.weights
        if weights is None:
            weights = build.constant(subgraph.constant_weights, "attention_weights_constant")
        samples = [build.reshape(locations, [*per_sample, 2], "sampling_locations"),
                   build.reshape(weights, per_sample, "attention_weights")]
    levels_in = [build.constant(np.array(subgraph.level_shapes, np.int32), "spatial_shapes"),
                 build.constant(starts.astype(np.int32), "level_start_index")]
    value = subgraph.value
    if not subgraph.value_is_4d:
        value = build.reshape(value, [0, sum(h * w for h, w in subgraph.level_shapes), subgraph.heads,
                                      subgraph.channels], "value")
    build.nodes.append(onnx.helper.make_node(
        plugin.name, [value, *levels_in, *samples], [subgraph.output], name=build.prefix,
        domain=plugin.domain, plugin_version=plugin.version, plugin_namespace=plugin.namespace, **attributes))
    return build.nodes


def _common_prefix(names: list[str]) -> str:
    parts = [name.split("/") for name in names]
    common = []
    for level in zip(*parts):
        if len(set(level)) != 1:
            break
        common.append(level[0])
    return "/".join(common[:-1] if len(common) == len(parts[0]) else common)


def _prune(graph: onnx.GraphProto) -> int:
    """Remove nodes none of whose outputs is read; returns how many."""
    removed = 0
    while True:
        read = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
        dead = [i for i, node in enumerate(graph.node) if not any(o in read for o in node.output if o)]
        if not dead:
            break
        for i in reversed(dead):
            del graph.node[i]
        removed += len(dead)
    used = {name for node in graph.node for name in node.input}
    kept = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    produced = {name for node in graph.node for name in node.output}
    kept_info = [v for v in graph.value_info if v.name in produced]
    del graph.value_info[:]
    graph.value_info.extend(kept_info)
    return removed


def replace_subgraphs(model: onnx.ModelProto, subgraphs: list[MsdaSubgraph]) -> tuple[onnx.ModelProto, list[dict], int]:
    """A copy of `model` with each of `subgraphs` replaced by a plugin node (the fused one where its fused
    inputs were found); also what was replaced and how many nodes were removed."""
    patched = onnx.ModelProto()
    patched.CopyFrom(model)
    graph = patched.graph
    replaced = []
    for index, subgraph in enumerate(subgraphs):
        producer = next(i for i, node in enumerate(graph.node) if subgraph.output in node.output)
        del graph.node[producer]
        new_nodes = _plugin_nodes(subgraph, index, graph)
        for offset, node in enumerate(new_nodes):
            graph.node.insert(producer + offset, node)
        replaced.append({"node": new_nodes[-1].name, "op_type": new_nodes[-1].op_type, **subgraph.describe()})
    removed = _prune(graph) + len(subgraphs)  # the producers of the outputs, deleted above
    if not any(o.domain == DETRT_PLUGIN.domain for o in patched.opset_import):
        patched.opset_import.append(onnx.helper.make_opsetid(DETRT_PLUGIN.domain, 1))
    add_level_shapes(patched)
    return patched, replaced, removed


def _no_subgraph_message(path: str, findings: Findings) -> str:
    if findings.unsupported:
        return (f"{path}: found MSDA-like GridSample groups but none it can replace: "
                + "; ".join(findings.unsupported))
    if findings.untouched:
        return (f"{path}: no MSDA subgraph; its {len(findings.untouched)} GridSample node(s) feed no weighted sum "
                f"over levels ({', '.join(findings.untouched[:3])}...), so they are not MSDA and were left alone")
    return (f"{path}: no MSDA subgraph (it has no GridSample node); nothing to patch. detrt patch finds MSDA as "
            "GridSample per level; RT-DETRv2's discrete sampling (a gather) is not recognised: export such a model "
            "with `detrt export --hf DIR`")


def patch_model(model: onnx.ModelProto, name: str, fused: bool = False, seed: int = 0,
                progress: Callable[[str], None] = lambda message: None,
                shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[onnx.ModelProto, PatchReport]:
    """`model` with every MSDA subgraph replaced by a detrt plugin node (`fused`: the fused node, where the
    locations and weights are computed as it computes them), checked on random input to give every output
    unchanged; and what was done. `name` names the model in messages; `shapes` sizes its inputs where they
    are symbolic beyond the batch (the patched model is fixed to them)."""
    register_plugin_schemas()
    feeds = random_feeds(model, seed, shapes)
    progress(f"running {name} in ONNX Runtime on random input ({', '.join(f'{k} {list(v.shape)}' for k, v in feeds.items())})")
    constants = constant_values(model)
    candidates = candidate_tensors(model)
    try:
        values = _run(model, feeds, [tensor for tensor in candidates if tensor not in constants])
    except Exception as error:  # onnxruntime's errors carry the node; say which model and what to do
        raise PatchError(f"{name} does not run in ONNX Runtime ({type(error).__name__}: {error}); "
                         "patch a model that does") from error
    values |= {tensor: numpy_helper.to_array(constants[tensor]) for tensor in candidates if tensor in constants}
    findings = find_msda_subgraphs(model, values, fused)
    if not findings.subgraphs:
        raise PatchError(_no_subgraph_message(name, findings))
    progress(f"found {len(findings.subgraphs)} MSDA subgraph(s)" +
             (f"; {len(findings.unsupported)} GridSample group(s) not supported" if findings.unsupported else ""))
    not_fused = [f"{s.output}: {s.not_fused}" for s in findings.subgraphs if s.not_fused]
    patched, replaced, removed = replace_subgraphs(model, findings.subgraphs)
    fixed = _fix_input_sizes(patched, feeds)
    validate_plugin_graph(patched)
    finalize(patched)
    progress("checking the patched graph against the original")
    checked = [s.output for s in findings.subgraphs]
    after = _run(patched, feeds, checked)
    worst = _compare([o.name for o in model.graph.output] + checked, values, after, name)
    return patched, PatchReport(replaced, findings.unsupported, findings.untouched, worst, removed, not_fused, fixed)


def patch_onnx(source: str | Path, target: str | Path, fused: bool = False, seed: int = 0,
               progress: Callable[[str], None] = lambda message: None,
               shapes: dict[str, tuple[int, ...]] | None = None) -> PatchReport:
    """`patch_model` of the ONNX at `source`, written to `target` atomically (nothing is written when the
    check fails)."""
    patched, report = patch_model(load_onnx(source), str(source), fused, seed, progress, shapes)
    save_atomic(patched, target)
    return report


def _compare(names: list[str], before: dict[str, np.ndarray], after: dict[str, np.ndarray], source: str) -> float:
    """Largest |after - before| over `names`; a PatchError naming the first tensor beyond `TOLERANCE`."""
    worst = 0.0
    for name in names:
        a, b = np.asarray(after[name]), np.asarray(before[name])
        if a.shape != b.shape:
            raise PatchError(f"patching {source} changed the shape of {name} from {b.shape} to {a.shape}; "
                             "nothing was written")
        if a.size == 0:
            continue
        difference = np.abs(a.astype(np.float64) - b.astype(np.float64))
        limit = TOLERANCE * (1 + np.abs(b.astype(np.float64)))
        if not np.all(difference <= limit):
            raise PatchError(f"patching {source} changed {name} by up to {float(np.nanmax(difference)):.3g} "
                             f"(tolerance {TOLERANCE} x (1 + |value|)); nothing was written. Report the file's "
                             "exporter and opset: its MSDA pattern is one detrt reads wrongly")
        worst = max(worst, float(difference.max()))
    return worst
