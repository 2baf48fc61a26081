"""Find multi-scale deformable attention in ONNX graphs that other code exported.

Exported from PyTorch (transformers, the original Deformable-DETR / RT-DETR / D-FINE code, torch.onnx's
TorchScript or dynamo exporter, opsets 16 to 20), MSDA is one ``GridSample`` per level, each sampling
one level of the value map at that level's locations (``2 * loc - 1``), the samples of all levels joined
and multiplied by the attention weights, and a ``ReduceSum`` over the samples. The reshapes and
transposes between those steps differ from exporter to exporter, so the finder does not match op
sequences. It finds the structure (GridSample nodes that reach one ReduceSum through a Mul), then finds
each role among the nearby tensors by its shape and proves it by the values of one run:

- ``value`` (N, S, M, D): each level's GridSample input is its slice of S, heads folded into the batch;
- ``locations`` (N, Lq, M, T, 2) or (N, Lq, M, L, P, 2): each level's grid is ``2 * loc - 1`` of its points;
- ``weights`` (N, Lq, M, T) or (N, Lq, M, L, P): the Mul's other input is them, heads folded likewise;
- ``output`` (N, Lq, M*D): the first tensor after the ReduceSum with that shape.

A subgraph where some role is not found is reported with the reason and left as it is, and so are
GridSample nodes that feed no such sum.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx

SEARCH_DEPTH = 10  # nodes between a GridSample and the tensors that play the MSDA roles, in every export seen
_FOLLOW_OPS = {"Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Cast"}
_SAMPLE_PATH_OPS = _FOLLOW_OPS | {"Concat", "Mul"}  # GridSample outputs -> stacked -> times the weights
_SUPPORTED_MODES = (b"bilinear", b"linear")  # GridSample-16 and GridSample-20 spell bilinear differently
GRID_TOLERANCE = 1e-6  # |grid - (2 * loc - 1)|: the graph computes the grid from the locations in fp32


@dataclass
class FusedInputs:
    """The fused plugin's inputs in a foreign graph: reference points, raw offsets and pre-softmax logits."""

    reference_points: str  # (N, Lq, L, d), (N, Lq, 1, d) or (N, Lq, d); d = 2 (x, y) or 4 (cx, cy, w, h)
    offsets: str  # (N, Lq, M, T, 2) or (N, Lq, M, L, P, 2)
    logits: str  # (N, Lq, M, T) or (N, Lq, M, L, P)
    reference_dim: int
    reference_levels: int  # L: one reference per level, as the plugin takes them; 1: one for all levels


@dataclass
class MsdaSubgraph:
    """One MSDA computation in a foreign graph: the tensors that play its roles and its sizes."""

    grid_samples: list[str]  # node names, level order
    reduce_sum: str
    value: str
    locations: str | None  # None: the graph folded them into its grids (constant_locations holds them)
    weights: str | None  # None: folded into a constant factor (constant_weights holds them)
    output: str
    level_shapes: list[tuple[int, int]]  # (H_l, W_l)
    points: list[int]  # P_l
    heads: int
    channels: int  # D, per head
    queries: int
    constant_locations: np.ndarray | None = None  # (N, Lq, M, T, 2), from constant grids
    constant_weights: np.ndarray | None = None  # (N, Lq, M, T), from a constant factor
    value_is_4d: bool = True  # False: `value` holds the (N, S, M, D) values in another shape, e.g. (N, S, M*D)
    fused: FusedInputs | None = None  # found when asked for (`find_msda_subgraphs(fused=True)`)
    not_fused: str | None = None  # asked for, not found: why

    def describe(self) -> dict:
        """JSON-friendly summary."""
        return {"grid_samples": self.grid_samples, "levels": [list(s) for s in self.level_shapes],
                "points_per_level": self.points, "heads": self.heads, "channels_per_head": self.channels,
                "queries": self.queries, "output": self.output}


@dataclass
class Findings:
    """What `find_msda_subgraphs` found."""

    subgraphs: list[MsdaSubgraph] = field(default_factory=list)
    unsupported: list[str] = field(default_factory=list)  # a reason per GridSample group not replaced
    untouched: list[str] = field(default_factory=list)  # GridSample nodes that are not part of MSDA


class _Graph:
    """Producers and consumers of a graph's tensors."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.nodes = list(model.graph.node)
        self.constants = {t.name for t in model.graph.initializer}
        self.constants |= {name for node in self.nodes if node.op_type == "Constant" for name in node.output}
        self.producer = {name: node for node in self.nodes for name in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.nodes:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def ancestors(self, start: str, depth: int = SEARCH_DEPTH) -> list[str]:
        """Tensors `start` is computed from, up to `depth` nodes back, nearest first (`start` included)."""
        return _breadth_first(start, depth, lambda name: self.producer[name].input if name in self.producer else ())

    def descendants(self, start: str, depth: int = SEARCH_DEPTH) -> list[str]:
        """Tensors computed from `start`, up to `depth` nodes on, nearest first (`start` included)."""
        return _breadth_first(start, depth, lambda name: [o for n in self.consumers.get(name, ()) for o in n.output])


def _breadth_first(start: str, depth: int, neighbours: Callable[[str], Iterable[str]]) -> list[str]:
    seen, order, queue = {start}, [start], deque([(start, 0)])
    while queue:
        name, distance = queue.popleft()
        if distance == depth:
            continue
        for other in neighbours(name):
            if other and other not in seen:
                seen.add(other)
                order.append(other)
                queue.append((other, distance + 1))
    return order


def _unsupported_mode(node: onnx.NodeProto) -> str | None:
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    mode, padding = attributes.get("mode", b"bilinear"), attributes.get("padding_mode", b"zeros")
    if mode not in _SUPPORTED_MODES or padding != b"zeros" or attributes.get("align_corners", 0) != 0:
        return (f"{node.name} samples with mode={mode.decode()}, padding_mode={padding.decode()}, "
                f"align_corners={attributes.get('align_corners', 0)}; MSDA is bilinear, zeros, align_corners=0")
    return None


def candidate_tensors(model: onnx.ModelProto) -> list[str]:
    """The tensors whose values `find_msda_subgraphs` needs: those near a GridSample."""
    graph = _Graph(model)
    names: dict[str, None] = {}
    for node in graph.nodes:
        if node.op_type == "GridSample":
            for start in node.input[:2]:
                names.update(dict.fromkeys(graph.ancestors(start)))
            for tensor in graph.descendants(node.output[0]):
                names.update(dict.fromkeys(graph.ancestors(tensor, SEARCH_DEPTH // 2)))
    return list(names)


def find_msda_subgraphs(model: onnx.ModelProto, values: dict[str, np.ndarray], fused: bool = False) -> Findings:
    """Every MSDA subgraph of `model`, its roles proven on `values` (one run's tensors by name, at least
    those of `candidate_tensors`); `fused`: also the fused node's inputs of each, where they are found."""
    graph = _Graph(model)
    findings = Findings()
    groups: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.nodes:
        if node.op_type != "GridSample":
            continue
        reduce_sum = _weighted_sum(graph, node)
        if reduce_sum is None:
            findings.untouched.append(node.name)
        else:
            groups.setdefault(reduce_sum.name, []).append(node)
    for reduce_name, samplers in groups.items():
        problem = next((p for p in map(_unsupported_mode, samplers) if p), None)
        if problem is None:
            match = _match(graph, samplers, reduce_name, values, fused)
            if isinstance(match, MsdaSubgraph):
                findings.subgraphs.append(match)
                continue
            problem = match
        findings.unsupported.append(f"GridSample {', '.join(n.name for n in samplers)} -> {reduce_name}: {problem}")
    return findings


def _weighted_sum(graph: _Graph, sampler: onnx.NodeProto) -> onnx.NodeProto | None:
    """The ReduceSum that sums `sampler`'s samples after a Mul, reached through the ops that join and reshape
    samples only (a GridSample whose output is computed on, e.g. a warp feeding a backbone, is not MSDA)."""
    queue, seen = deque([(sampler.output[0], 0, False)]), set()
    while queue:
        name, distance, after_mul = queue.popleft()
        for node in graph.consumers.get(name, ()):
            if node.op_type == "ReduceSum" and after_mul:
                return node
            if node.name in seen or distance == SEARCH_DEPTH or node.op_type not in _SAMPLE_PATH_OPS:
                continue
            seen.add(node.name)
            queue.extend((output, distance + 1, after_mul or node.op_type == "Mul") for output in node.output)
    return None


def _match(graph: _Graph, samplers: list[onnx.NodeProto], reduce_name: str, values: dict[str, np.ndarray],
           fused: bool) -> MsdaSubgraph | str:
    """The roles of one GridSample group (`fused`: and the fused node's inputs), or why they were not all found."""
    inputs = [values.get(node.input[0]) for node in samplers]
    grids = [values.get(node.input[1]) for node in samplers]
    if any(v is None or v.ndim != 4 for v in (*inputs, *grids)):
        return "its GridSample inputs are not 4-d tensors (a 5-d, volumetric GridSample is not MSDA)"
    folded, channels = inputs[0].shape[:2]
    shapes = [tuple(int(d) for d in v.shape[2:]) for v in inputs]
    points = [int(g.shape[2]) for g in grids]
    queries = int(grids[0].shape[1])
    if any(v.shape[:2] != (folded, channels) for v in inputs) or any(g.shape[:2] != (folded, queries) for g in grids):
        return "its levels disagree on batch x heads, channels or queries"
    reduce_node = next(n for n in graph.nodes if n.name == reduce_name)
    output = _output(graph, reduce_node.output[0], values, folded, channels, queries)
    if output is None:
        return f"no (N, {queries}, heads x {channels}) tensor follows {reduce_name}"
    batch = values[output].shape[0]
    heads = folded // batch
    sizes = _Sizes(batch, heads, channels, queries, shapes, points)
    value = _first(graph.ancestors(samplers[0].input[0]), values, lambda v: sizes.is_value(v, inputs))
    if value is None:
        return f"no (N, S, M, D) = ({batch}, {sizes.total_values}, {heads}, {channels}) value tensor feeds its levels"
    locations = _first(graph.ancestors(samplers[0].input[1]), values, lambda v: sizes.is_locations(v, grids))
    constant_locations = None
    if locations is None and all(node.input[1] in graph.constants for node in samplers):
        constant_locations = sizes.locations_of(grids)  # the locations did not depend on the input
    elif locations is None:
        return f"its grids are not 2 * loc - 1 of one ({batch}, {queries}, {heads}, {sum(points)}, 2) locations tensor"
    weights = _weights(graph, samplers, reduce_node, values, sizes)
    if weights is None:
        return f"no ({batch}, {queries}, {heads}, {sum(points)}) attention-weights tensor multiplies its samples"
    constant_weights = None
    if isinstance(weights, np.ndarray):
        weights, constant_weights = None, weights
    subgraph = MsdaSubgraph([n.name for n in samplers], reduce_name, value, locations, weights, output, shapes,
                            points, heads, channels, queries, constant_locations, constant_weights,
                            values[value].ndim == 4)
    if fused:
        found = _fused_inputs(graph, subgraph, sizes, values)
        subgraph.fused, subgraph.not_fused = (found, None) if isinstance(found, FusedInputs) else (None, found)
    return subgraph


def _first(names: Iterable[str], values: dict[str, np.ndarray], test: Callable[[np.ndarray], bool]) -> str | None:
    return next((name for name in names if name in values and test(values[name])), None)


def _output(graph: _Graph, start: str, values: dict[str, np.ndarray], folded: int, channels: int,
            queries: int) -> str | None:
    """The last (N, Lq, M*D) tensor on the single-consumer chain of reshapes after the ReduceSum (the last:
    when M*D equals Lq, the (N, M*D, Lq) tensor before the final transpose has the same sizes)."""
    name, found = start, None
    for _ in range(SEARCH_DEPTH):
        consumers = graph.consumers.get(name, [])
        if len(consumers) != 1 or consumers[0].op_type not in _FOLLOW_OPS:
            return found
        name = consumers[0].output[0]
        value = values.get(name)
        if value is not None and value.ndim == 3 and value.shape[1] == queries and value.shape[0] * value.shape[2] == folded * channels:
            found = name
    return found


def _weights(graph: _Graph, samplers: list[onnx.NodeProto], reduce_node: onnx.NodeProto,
             values: dict[str, np.ndarray], sizes: "_Sizes") -> str | np.ndarray | None:
    """The attention weights: an ancestor of the Mul input that does not come from the samples, or their
    values when the graph folded them into a constant factor."""
    sampled = {t for node in samplers for t in graph.descendants(node.output[0])}
    for name in graph.ancestors(reduce_node.input[0], 4):
        node = graph.producer.get(name)
        if node is None or node.op_type != "Mul":
            continue
        for other in node.input:
            if other not in sampled and other in values:
                found = _first(graph.ancestors(other), values, lambda v: sizes.is_weights(v, values[other]))
                if found is not None:
                    return found
                if other in graph.constants and values[other].size == sizes.batch * sizes.queries * sizes.heads * sum(sizes.points):
                    return sizes.weights_of(values[other])
    return None


@dataclass
class _Sizes:
    """The sizes of one MSDA group, and the value checks of each role."""

    batch: int
    heads: int
    channels: int
    queries: int
    shapes: list[tuple[int, int]]
    points: list[int]

    @property
    def total_values(self) -> int:
        return sum(h * w for h, w in self.shapes)

    def per_sample(self, tensor: np.ndarray, last: tuple[int, ...]) -> np.ndarray | None:
        """`tensor` as (N, Lq, M, T, *last) when it has that size as (N, Lq, M, T) or (N, Lq, M, L, P)."""
        n, q, m, t = self.batch, self.queries, self.heads, sum(self.points)
        layouts = [(n, q, m, t, *last)]
        if len(set(self.points)) == 1:
            layouts.append((n, q, m, len(self.points), self.points[0], *last))
        return tensor.reshape(n, q, m, t, *last) if tensor.shape in layouts else None

    def fused_locations(self, references: np.ndarray, offsets: np.ndarray) -> np.ndarray:
        """The fused kernel's locations (N, Lq, M, T, 2) from references (N, Lq, L or 1, d) and offsets
        (N, Lq, M, T, 2), in float32 as the kernel computes them."""
        level = np.repeat(np.arange(len(self.points)), self.points)
        if references.shape[2] == 1:
            references = np.repeat(references, len(self.points), axis=2)
        ref = references[:, :, None, level].astype(np.float32)  # (N, Lq, 1, T, d)
        if ref.shape[-1] == 2:
            size = np.array([(w, h) for h, w in self.shapes], np.float32)[level]
            return ref + offsets / size
        count = np.array(self.points, np.float32)[level][:, None]
        return ref[..., :2] + offsets / count * ref[..., 2:] * np.float32(0.5)

    def locations_of(self, grids: list[np.ndarray]) -> np.ndarray:
        """The (N, Lq, M, T, 2) locations whose grids (2 * loc - 1, heads folded into the batch) are `grids`."""
        levels = [(g.reshape(self.batch, self.heads, self.queries, -1, 2) + 1) / 2 for g in grids]
        return np.concatenate(levels, axis=3).transpose(0, 2, 1, 3, 4).astype(np.float32)

    def weights_of(self, factor: np.ndarray) -> np.ndarray:
        """The (N, Lq, M, T) weights whose heads-folded (N*M, 1, Lq, T) form is `factor`."""
        return factor.reshape(self.batch, self.heads, self.queries, -1).transpose(0, 2, 1, 3).astype(np.float32)

    def is_value(self, tensor: np.ndarray, inputs: list[np.ndarray]) -> bool:
        """True when `tensor` is the (N, S, M, D) value, or holds it in another shape of N rows (e.g. the
        (N, S, M*D) projection, where the exporter merged the reshapes after it), as the levels show."""
        shape = (self.batch, self.total_values, self.heads, self.channels)
        if tensor.size != np.prod(shape) or tensor.shape[0] != self.batch:
            return False
        tensor = tensor.reshape(shape)
        start = 0
        for (h, w), level in zip(self.shapes, inputs):
            expected = tensor[:, start:start + h * w].transpose(0, 2, 3, 1).reshape(level.shape)
            if not np.array_equal(expected, level):
                return False
            start += h * w
        return True

    def is_locations(self, tensor: np.ndarray, grids: list[np.ndarray]) -> bool:
        locations = self.per_sample(tensor, (2,))
        if locations is None:
            return False
        start = 0
        for count, grid in zip(self.points, grids):
            level = locations[:, :, :, start:start + count].transpose(0, 2, 1, 3, 4).reshape(grid.shape)
            if not np.allclose(2 * level - 1, grid, rtol=0, atol=GRID_TOLERANCE, equal_nan=True):
                return False
            start += count
        return True

    def is_weights(self, tensor: np.ndarray, factor: np.ndarray) -> bool:
        weights = self.per_sample(tensor, ())
        if weights is None or factor.size != weights.size:
            return False
        folded = weights.transpose(0, 2, 1, 3).reshape(factor.shape)
        return bool(np.array_equal(folded, factor))


# |loc - fused formula(ref, offsets)|: the graph and the formula round in another order (a few fp32 ulps)
LOCATION_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-6  # |softmax(logits) - weights|, both fp32


def _fused_inputs(graph: _Graph, subgraph: MsdaSubgraph, sizes: _Sizes,
                  values: dict[str, np.ndarray]) -> FusedInputs | str:
    """The tensors the fused plugin node takes instead of `subgraph`'s locations and weights, proven on
    `values` as the other roles are, or why they were not found."""
    if subgraph.locations is None or subgraph.weights is None:
        return "its sampling locations or weights were folded into constants, so there is nothing to fuse"
    weights = sizes.per_sample(values[subgraph.weights], ())
    logits = None
    for name in graph.ancestors(subgraph.weights, 4):
        node = graph.producer.get(name)
        if node is not None and node.op_type == "Softmax":
            logits = _first(graph.ancestors(node.input[0], 3), values,
                            lambda v: _is_softmax_of(sizes.per_sample(v, ()), weights))
            break
    if logits is None:
        return "its attention weights are not the softmax of one (N, Lq, M, T) logits tensor"
    locations = sizes.per_sample(values[subgraph.locations], (2,))
    references = [name for name in graph.ancestors(subgraph.locations)
                  if name in values and _reference_dim(values[name], sizes) is not None]
    for offsets in graph.ancestors(subgraph.locations)[1:]:
        offset_values = sizes.per_sample(values[offsets], (2,)) if offsets in values else None
        if offset_values is None:
            continue
        for reference in references:
            dim = _reference_dim(values[reference], sizes)
            expected = sizes.fused_locations(values[reference].reshape(sizes.batch, sizes.queries, -1, dim), offset_values)
            if np.allclose(expected, locations, rtol=LOCATION_TOLERANCE, atol=LOCATION_TOLERANCE):
                return FusedInputs(reference, offsets, logits, dim, values[reference].size // (sizes.batch * sizes.queries * dim))
    return ("its locations are neither ref + offset / (W, H) nor ref_xy + offset / P * ref_wh * 0.5 of one "
            "reference-points and one offsets tensor")


def _is_softmax_of(logits: np.ndarray | None, weights: np.ndarray) -> bool:
    if logits is None:
        return False
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return bool(np.allclose(shifted / shifted.sum(axis=-1, keepdims=True), weights, rtol=0, atol=WEIGHT_TOLERANCE))


def _reference_dim(tensor: np.ndarray, sizes: _Sizes) -> int | None:
    """2 or 4 when `tensor` has the shape of reference points for `sizes`: (N, Lq, d) or (N, Lq, L, d), with
    any number of size-1 dimensions between (e.g. (N, Lq, 1, L, 1, d), as they are broadcast)."""
    if tensor.ndim < 3 or tensor.shape[:2] != (sizes.batch, sizes.queries) or tensor.shape[-1] not in (2, 4):
        return None
    middle = tuple(d for d in tensor.shape[2:-1] if d != 1)
    return tensor.shape[-1] if middle in ((), (len(sizes.points),)) else None
