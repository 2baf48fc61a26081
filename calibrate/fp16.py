"""FP16: a strongly typed graph whose tensors are float16, except the nodes a keep list holds in float32.

The conversion is ONNX Runtime's float16 converter (`onnxruntime.transformers.float16`, derived from
onnxconverter-common's and maintained in onnxruntime), installed with onnxruntime. Graph inputs and outputs stay
float32 (casts inside), so the runtime contract is the same at every precision.

Default keep list (docs/precision.md has the measurements): LayerNormalization (TensorRT warns that
fp16 LayerNorm after attention can overflow), and the MSDA sampling arithmetic with float32 samples:
the nodes that compute sampling locations stay float32 and our plugin nodes take them (and the
attention weights, reference points, offsets, logits) in float32 next to a float16 value, so no
location is rounded to float16's 2^-11 relative step on its way into the kernel (0.5 px on a
1,000-px level). The plugin nodes' value and output are float16 (our TensorRT plugin reads float16
and accumulates in float32; ONNX Runtime runs them in float32 between casts, the same arithmetic).
Presets can be added by name: ``plugins`` (plugin nodes entirely in float32) and ``boxes`` (box
refinement and decoding). Given images, a range check (`fp16_ranges`) adds every node whose values
float16 cannot hold.
"""
from __future__ import annotations

import fnmatch
import glob
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from detrt.detectors import all_architectures
from detrt.export import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, element_types, plugin_nodes, register_plugin_schemas

from .calibration_images import ImageBatches
from .fp16_ranges import DEFAULT_LIMIT, activation_peaks, nodes_beyond
from .model_files import finish, load_fp32

# Node-name patterns of each family's location and box arithmetic, from the architecture registry.
FP16_SAMPLING_NODES = tuple(pattern for a in all_architectures() for pattern in a.fp16_sampling_nodes)
FP16_BOX_NODES = tuple(pattern for a in all_architectures() for pattern in a.fp16_box_nodes)
FP16_BOX_OPS = ("Sigmoid", "Log", "Clip")  # inverse sigmoid and sigmoid of boxes and scores
FP16_NORM_OPS = ("LayerNormalization",)


@dataclass(frozen=True)
class KeepList:
    """Nodes that stay float32 in an FP16 graph: by op type, or by node name (shell-style patterns)."""

    op_types: tuple[str, ...] = ()
    node_patterns: tuple[str, ...] = ()
    plugins: bool = False  # the plugin nodes (MSDA, DCN)
    plugin_samples: bool = False  # our MSDA nodes take every input but value in float32

    @classmethod
    def default(cls) -> "KeepList":
        """The default for DETR-family graphs: LayerNorm, and the sampling arithmetic with float32 samples."""
        return cls(FP16_NORM_OPS) + PRESETS["sampling"]

    def __add__(self, other: "KeepList") -> "KeepList":
        return KeepList(self.op_types + other.op_types, self.node_patterns + other.node_patterns,
                        self.plugins or other.plugins, self.plugin_samples or other.plugin_samples)

    @classmethod
    def parse(cls, entries: list[str], defaults: bool = True) -> "KeepList":
        """From command-line entries: a preset name (see `PRESETS`), a node-name pattern (starting with '/'
        or holding '*' or '?'), or else an op type."""
        keep = cls.default() if defaults else cls()
        for entry in entries:
            if entry in PRESETS:
                keep = keep + PRESETS[entry]
            elif entry.startswith("/") or "*" in entry or "?" in entry:
                keep = keep + cls((), (entry,))
            else:
                keep = keep + cls((entry,))
        return keep

    def nodes(self, model: onnx.ModelProto) -> list[onnx.NodeProto]:
        """The nodes of `model` this list keeps in float32."""
        plugins = {node.name for node in plugin_nodes(model)} if self.plugins else set()
        return [node for node in model.graph.node
                if node.name in plugins or node.op_type in self.op_types
                or any(fnmatch.fnmatchcase(node.name, pattern) for pattern in self.node_patterns)]


PRESETS = {"sampling": KeepList((), FP16_SAMPLING_NODES, plugin_samples=True),
           "boxes": KeepList(FP16_BOX_OPS, FP16_BOX_NODES),
           "layernorm": KeepList(FP16_NORM_OPS), "plugins": KeepList(plugins=True)}


@dataclass
class Fp16Report:
    """What the conversion did."""

    path: Path
    kept_fp32: dict[str, int] = field(default_factory=dict)  # op type -> nodes kept in float32
    fp16_nodes: int = 0
    casts: int = 0
    kept_for_range: list[str] | None = None  # nodes whose values float16 cannot hold; None: not checked

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        summary = {"onnx": str(self.path), "precision": "fp16", "fp16_nodes": self.fp16_nodes,
                   "kept_fp32": self.kept_fp32, "casts": self.casts}
        if self.kept_for_range is None:
            return {**summary, "range_check": "not run: pass --images or --coco to keep what float16 cannot hold"}
        return {**summary, "kept_for_range": len(self.kept_for_range), "kept_for_range_first": self.kept_for_range[:10]}


def _drop_duplicate_nodes(model: onnx.ModelProto) -> None:
    """The converter adds one identical Cast per float32 consumer of a float16 tensor; keep one."""
    seen: set[bytes] = set()
    unique = []
    for node in model.graph.node:
        key = node.SerializeToString()
        if key not in seen:
            seen.add(key)
            unique.append(node)
    del model.graph.node[:]
    model.graph.node.extend(unique)


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None) if node.op_type == "Cast" else None


def _drop_unread_casts(graph: onnx.GraphProto) -> None:
    """Remove the Cast nodes whose outputs no node and no graph output reads."""
    used = {name for node in graph.node for name in node.input} | {output.name for output in graph.output}
    live = [node for node in graph.node if node.op_type != "Cast" or any(o in used for o in node.output)]
    del graph.node[:]
    graph.node.extend(live)


def _drop_float16_round_trips(model: onnx.ModelProto) -> None:
    """The converter casts the output of every float32 node to float16 and back for a float32 consumer,
    even between two kept nodes; that rounding defeats the keep list (and turns values beyond 65504 into
    inf). Feed such consumers the float32 tensor directly; drop casts nothing reads any more."""
    graph = model.graph
    types = element_types(onnx.shape_inference.infer_shapes(model))
    producer = {output: node for node in graph.node for output in node.output}
    graph_outputs = {output.name for output in graph.output}
    renamed: dict[str, str] = {}
    for node in graph.node:
        source = producer.get(node.input[0]) if _cast_to(node) == onnx.TensorProto.FLOAT else None
        if source is not None and _cast_to(source) == onnx.TensorProto.FLOAT16 \
                and types.get(source.input[0]) == onnx.TensorProto.FLOAT and node.output[0] not in graph_outputs:
            renamed[node.output[0]] = source.input[0]
    if not renamed:
        return
    for node in graph.node:
        for index, name in enumerate(node.input):
            node.input[index] = renamed.get(name, name)
    _drop_unread_casts(graph)


def _float32_plugin_samples(model: onnx.ModelProto) -> None:
    """Give our MSDA plugin nodes with a float16 value every other float input in float32: the float32
    tensor a converter Cast rounded, where there is one, else a Cast up (all inputs share one type)."""
    register_plugin_schemas()
    graph = model.graph
    types = element_types(onnx.shape_inference.infer_shapes(model))
    producer = {output: node for node in graph.node for output in node.output}
    float16, float32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    for node in [n for n in graph.node if n.op_type in (DETRT_PLUGIN.name, DETRT_FUSED_PLUGIN.name)]:
        if types.get(node.input[0]) != float16:
            continue
        for position in range(3, len(node.input)):
            name = node.input[position]
            source = producer.get(name)
            if types.get(name) == float32:
                continue
            if source is not None and _cast_to(source) == float16 and types.get(source.input[0]) == float32:
                node.input[position] = source.input[0]
            else:
                node.input[position] = f"{name}/{node.name}/float32"
                cast = onnx.helper.make_node("Cast", [name], [node.input[position]], to=float32,
                                             name=f"{node.name}/sample{position}/float32")
                graph.node.insert(list(graph.node).index(node), cast)
    _drop_unread_casts(graph)


def to_fp16(model: onnx.ModelProto, keep: KeepList) -> onnx.ModelProto:
    """The FP16 version of `model` (float32 graph I/O), with `keep`'s nodes in float32."""
    from onnxruntime.transformers.float16 import (
        DEFAULT_OP_BLOCK_LIST,
        convert_float_to_float16,
    )

    kept = keep.nodes(model)
    converted = convert_float_to_float16(onnx.ModelProto.FromString(model.SerializeToString()), keep_io_types=True,
                                         op_block_list=list(DEFAULT_OP_BLOCK_LIST),
                                         node_block_list=[node.name for node in kept])
    _drop_duplicate_nodes(converted)
    _drop_float16_round_trips(converted)
    if keep.plugin_samples and not keep.plugins:
        _float32_plugin_samples(converted)
    return converted


def _count(model: onnx.ModelProto) -> tuple[int, int, dict[str, int]]:
    types = element_types(model)
    fp16 = kept = casts = 0
    kept_ops: Counter[str] = Counter()
    for node in model.graph.node:
        if node.op_type == "Cast":
            casts += 1
            continue
        outputs = [types.get(name) for name in node.output]
        if onnx.TensorProto.FLOAT16 in outputs:
            fp16 += 1
        elif onnx.TensorProto.FLOAT in outputs:
            kept += 1
            kept_ops[node.op_type] += 1
    return fp16, casts, dict(kept_ops.most_common())


def convert_fp16(source: str | Path, output: str | Path, keep: KeepList | None = None,
                 range_images: list[Path] | None = None, batch_size: int = 8,
                 limit: float = DEFAULT_LIMIT) -> Fp16Report:
    """Convert the FP32 export `source` to an FP16 graph at `output` (metadata precision "fp16").

    With `range_images`, the FP32 graph runs on them first (pre-processed as the runtime does) and
    every node reading or writing a value beyond `limit` is kept in float32 as well (`fp16_ranges`)."""
    model, metadata = load_fp32(source)
    keep = keep or KeepList.default()
    beyond = None
    if range_images is not None:
        peaks = activation_peaks(model, ImageBatches(range_images, metadata, max(1, min(batch_size, len(range_images)))))
        beyond = nodes_beyond(model, peaks, limit)
        keep = keep + KeepList((), tuple(glob.escape(name) for name in beyond))
    path = finish(to_fp16(model, keep), metadata, "fp16", output)
    fp16, casts, kept = _count(onnx.load(str(path)))
    return Fp16Report(path, kept, fp16, casts, beyond)
