"""FP16: a strongly typed graph whose tensors are float16, except the nodes a keep list holds in float32.

The conversion is ONNX Runtime's float16 converter (`onnxruntime.transformers.float16`, derived from
onnxconverter-common's and maintained in onnxruntime), installed with onnxruntime. Graph inputs and outputs stay
float32 (casts inside), so the runtime contract is the same at every precision.

Default keep list, decided from measurements on the shipped model (docs/precision.md):
LayerNormalization (TensorRT warns that fp16 LayerNorm after attention can overflow; measured: no
loss, slightly lower worst-case error). Plugin nodes become float16 like their neighbours (our
TensorRT plugin has an fp16 kernel with float32 accumulation; ONNX Runtime runs them in float32 between
casts, which is the same arithmetic). Presets can be added by name: ``plugins`` (plugin nodes in
float32), ``sampling`` (the MSDA sampling-location arithmetic) and ``boxes`` (box refinement and
decoding); measured on the shipped model they did not reduce the FP16 error, so they are not defaults.
"""
from __future__ import annotations

import fnmatch
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from detrt.export.onnx_passes import plugin_nodes

from .model_files import finish, load_fp32

FP16_SAMPLING_NODES = (
    "*/sampling_offsets/*",                 # offsets projection (MatMul + bias)
    "*/encoder/layers.*/self_attn/Div",     # offsets / level (W, H)
    "*/encoder/layers.*/self_attn/Add",     # + reference points = sampling locations
    "*/decoder/layers.*/cross_attn/Div",
    "*/decoder/layers.*/cross_attn/Add",
    "*/reference_points/*",
)
FP16_BOX_NODES = (
    "*bbox_embed*/layers.2/*",              # the box delta, added to inverse_sigmoid(reference)
    "/model/transformer/decoder/Add*",      # refinement: delta + inverse_sigmoid(reference)
    "/model/Add*",
)
FP16_BOX_OPS = ("Sigmoid", "Log", "Clip")  # inverse sigmoid and sigmoid of boxes and scores
FP16_NORM_OPS = ("LayerNormalization",)


@dataclass(frozen=True)
class KeepList:
    """Nodes that stay float32 in an FP16 graph: by op type, or by node name (shell-style patterns)."""

    op_types: tuple[str, ...] = ()
    node_patterns: tuple[str, ...] = ()
    plugins: bool = False  # the plugin nodes (MSDA, DCN)

    @classmethod
    def default(cls) -> "KeepList":
        """The measured default for DETR-family graphs."""
        return cls(FP16_NORM_OPS)

    def __add__(self, other: "KeepList") -> "KeepList":
        return KeepList(self.op_types + other.op_types, self.node_patterns + other.node_patterns,
                        self.plugins or other.plugins)

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


PRESETS = {"sampling": KeepList((), FP16_SAMPLING_NODES), "boxes": KeepList(FP16_BOX_OPS, FP16_BOX_NODES),
           "layernorm": KeepList(FP16_NORM_OPS), "plugins": KeepList(plugins=True)}


@dataclass
class Fp16Report:
    """What the conversion did."""

    path: Path
    kept_fp32: dict[str, int] = field(default_factory=dict)  # op type -> nodes kept in float32
    fp16_nodes: int = 0
    casts: int = 0

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        return {"onnx": str(self.path), "precision": "fp16", "fp16_nodes": self.fp16_nodes,
                "kept_fp32": self.kept_fp32, "casts": self.casts}


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


def to_fp16(model: onnx.ModelProto, keep: KeepList) -> onnx.ModelProto:
    """The FP16 version of `model` (float32 graph I/O), with `keep`'s nodes in float32."""
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST, convert_float_to_float16

    kept = keep.nodes(model)
    converted = convert_float_to_float16(onnx.ModelProto.FromString(model.SerializeToString()), keep_io_types=True,
                                         op_block_list=list(DEFAULT_OP_BLOCK_LIST),
                                         node_block_list=[node.name for node in kept])
    _drop_duplicate_nodes(converted)
    return converted


def _count(model: onnx.ModelProto) -> tuple[int, int, dict[str, int]]:
    types = {v.name: v.type.tensor_type.elem_type for v in (*model.graph.value_info, *model.graph.output)}
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


def convert_fp16(source: str | Path, output: str | Path, keep: KeepList | None = None) -> Fp16Report:
    """Convert the FP32 export `source` to an FP16 graph at `output` (metadata precision "fp16")."""
    model, metadata = load_fp32(source)
    path = finish(to_fp16(model, keep or KeepList.default()), metadata, "fp16", output)
    fp16, casts, kept = _count(onnx.load(str(path)))
    return Fp16Report(path, kept, fp16, casts)
