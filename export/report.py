"""A short account of an exported graph: what ops it has, its plugin nodes, its size."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx

from .onnx_passes import plugin_nodes


@dataclass
class ExportReport:
    """Facts about one exported ONNX file."""

    path: Path
    opset: int
    ops: dict[str, int]
    plugin_nodes: int
    parameters: int
    size_bytes: int
    inputs: dict[str, list] = field(default_factory=dict)
    outputs: dict[str, list] = field(default_factory=dict)
    msda: dict[str, str] = field(default_factory=dict)  # attention module -> the MSDA form it was exported as

    @classmethod
    def of(cls, model: onnx.ModelProto, path: Path, msda: dict[str, str] | None = None) -> "ExportReport":
        """Describe `model`, saved at `path`; `msda` says which form each attention module got."""
        def dims(info: onnx.ValueInfoProto) -> list:
            return [d.dim_param or d.dim_value for d in info.type.tensor_type.shape.dim]

        opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
        parameters = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        return cls(path, opset, dict(Counter(node.op_type for node in model.graph.node).most_common()),
                   len(plugin_nodes(model)), parameters, path.stat().st_size,
                   {i.name: dims(i) for i in model.graph.input}, {o.name: dims(o) for o in model.graph.output},
                   dict(msda or {}))

    def to_dict(self) -> dict:
        """JSON-friendly summary (the CLI prints it)."""
        return {"onnx": str(self.path), "opset": self.opset, "size_mb": round(self.size_bytes / 2**20, 2),
                "parameters": self.parameters, "plugin_nodes": self.plugin_nodes, "inputs": self.inputs,
                "outputs": self.outputs, "ops": self.ops, "msda": self.msda}
