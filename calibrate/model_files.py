"""Reading the FP32 export that precision conversion starts from, and writing its FP16/INT8 result
(simplified, shape-inferred, checked, metadata kept with the precision updated, written atomically)."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import onnx
from detrt.detectors import DetrtError, InputError
from detrt.export import (
    ModelMetadata,
    finalize,
    infer_shapes,
    load_onnx,
    read_metadata,
    register_plugin_schemas,
    save_atomic,
    simplify,
    validate_plugin_graph,
    write_metadata,
)

PRECISIONS = ("fp32", "fp16", "int8")


class PrecisionError(DetrtError, ValueError):
    """A model that cannot be converted as asked; the message says why and what to do."""


def load_fp32(path: str | Path) -> tuple[onnx.ModelProto, ModelMetadata]:
    """The FP32 detrt export at `path` and its metadata (both validated); a clear error for anything else."""
    model = load_onnx(path)
    metadata = read_metadata(model)
    validate_plugin_graph(model)
    if metadata.precision != "fp32":
        raise PrecisionError(f"{path} is already {metadata.precision}; convert the FP32 export from `detrt export` "
                             "(precision conversions do not stack)")
    register_plugin_schemas()  # plugin nodes get types and shapes in shape inference
    return model, metadata


def finish(model: onnx.ModelProto, metadata: ModelMetadata, precision: str, path: str | Path,
           simplify_graph: bool = True) -> Path:
    """Simplify, infer shapes, record `precision` in the metadata, check, and write atomically."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; choose one of {PRECISIONS}")
    if simplify_graph:
        model = simplify(model)
    model = infer_shapes(model)
    write_metadata(model, dataclasses.replace(metadata, precision=precision))
    finalize(model)
    return save_atomic(model, path)
