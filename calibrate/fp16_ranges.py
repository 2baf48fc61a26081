"""Which nodes float16 cannot hold: the FP32 graph's activation magnitudes on sample images.

float16's largest finite value is 65504. A node whose output goes beyond it turns into inf in FP16,
and a node reading such a value gets it cast to inf at its input; one inf in a backbone becomes NaN
scores. So a node is kept in float32 when any float tensor it reads or writes exceeds `limit` on the
sample images. The default limit is a quarter of 65504: room for images the check did not see.
"""
from __future__ import annotations

import numpy as np
import onnx
from detrt.export import INPUT_NAME, create_session, infer_shapes
from tqdm import tqdm

from .calibration_images import ImageBatches

FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504
DEFAULT_LIMIT = FLOAT16_MAX / 4


def _float_tensors(model: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    graph = model.graph
    produced = {name for node in graph.node for name in node.output}
    return [v for v in (*graph.value_info, *graph.output)
            if v.name in produced and v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT]


def activation_peaks(model: onnx.ModelProto, batches: ImageBatches) -> dict[str, float]:
    """The largest magnitude of every float tensor the nodes of `model` (FP32) produce, over `batches`."""
    probe = infer_shapes(onnx.ModelProto.FromString(model.SerializeToString()))
    tensors = _float_tensors(probe)
    del probe.graph.output[:]
    probe.graph.output.extend(tensors)
    session = create_session(probe)
    names = [t.name for t in tensors]
    peaks = dict.fromkeys(names, 0.0)
    for images in tqdm(batches, desc="fp16 range check", unit="batch", total=len(batches)):
        for name, values in zip(names, session.run(names, {INPUT_NAME: images})):
            peaks[name] = max(peaks[name], float(np.abs(values).max(initial=0.0)))
    return peaks


def nodes_beyond(model: onnx.ModelProto, peaks: dict[str, float], limit: float = DEFAULT_LIMIT) -> list[str]:
    """Names of the nodes that read or write a float tensor whose peak exceeds `limit`."""
    large = {name for name, peak in peaks.items() if not peak <= limit}  # NaN counts as too large
    return [node.name for node in model.graph.node if large.intersection(node.input) or large.intersection(node.output)]
