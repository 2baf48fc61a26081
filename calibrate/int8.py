"""INT8: explicit QuantizeLinear/DequantizeLinear pairs from calibration, as TensorRT 10/11 (strongly
typed) and ONNX Runtime read them.

The quantizer is ONNX Runtime's (`onnxruntime.quantization`, installed with onnxruntime): QDQ format,
int8 activations and weights, symmetric (zero point 0), weights per output channel, no int32 bias
quantisation (TensorRT fuses the float bias). Q/DQ pairs go on the inputs of Conv, MatMul and Gemm
only, where TensorRT fuses them into INT8 kernels; everything else stays float32, plugin nodes included,
or, with `float_layers="fp16"`, becomes FP16 as `detrt convert` would make it (float16 scales, opset 19).

Calibration uses ONNX Runtime's calibrators (entropy, percentile, minmax), fed by our own session so that
plugin graphs calibrate too, one batch at a time (bounded memory, a progress bar). The activation
ranges are saved as ONNX Runtime's JSON calibration cache plus a `detrt` entry naming the weights,
method and images they came from; a later run with the same cache skips calibration.
"""
from __future__ import annotations

import contextlib
import fnmatch
import io
import json
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from detrt.detectors import DetrtError, InputError, temporary_folder, write_bytes_atomic
from detrt.export import INPUT_NAME, ModelMetadata, create_session, plugin_nodes
from onnx import numpy_helper, version_converter
from tqdm import tqdm

from .calibration_images import ImageBatches
from .fp16 import KeepList, to_fp16
from .model_files import finish

METHODS = ("entropy", "percentile", "minmax")
QUANTIZED_OPS = ("Conv", "MatMul", "Gemm")
FLOAT_LAYER_PRECISIONS = ("fp32", "fp16")
FLOAT16_QDQ_OPSET = 19  # QuantizeLinear/DequantizeLinear take float16 scales from this opset
FLOAT16 = np.finfo(np.float16)


class CalibrationCacheError(DetrtError, ValueError):
    """A calibration cache that does not belong to this model or method."""


def _calibrator(model_path: Path, augmented_path: Path, method: str):  # noqa: ANN202 (an ORT calibrater)
    """ONNX Runtime's calibrater for `method`, symmetric, with the defaults of `create_calibrator`; the
    caller gives it a session (ours, which runs plugin nodes)."""
    from onnxruntime.quantization.calibrate import (
        EntropyCalibrater,
        MinMaxCalibrater,
        PercentileCalibrater,
    )

    if method not in METHODS:
        raise InputError(f"unknown calibration method {method!r}; choose one of {METHODS}")
    common = dict(op_types_to_calibrate=list(QUANTIZED_OPS), augmented_model_path=str(augmented_path), symmetric=True)
    if method == "entropy":
        return EntropyCalibrater(model_path, num_bins=128, num_quantized_bins=128, **common)
    if method == "percentile":
        return PercentileCalibrater(model_path, num_bins=2048, percentile=99.999, **common)
    return MinMaxCalibrater(model_path, **common)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


class _OneBatch:
    """A CalibrationDataReader over a single batch (the calibrator is fed batch by batch)."""

    def __init__(self, images) -> None:  # noqa: ANN001 (np.ndarray)
        self.pending = [{INPUT_NAME: images}]

    def get_next(self) -> dict | None:
        return self.pending.pop() if self.pending else None


def collect_ranges(model: onnx.ModelProto, batches: ImageBatches, method: str = "entropy"):  # noqa: ANN201
    """Activation ranges (ONNX Runtime `TensorsData`) of the Conv/MatMul/Gemm inputs and outputs of `model`."""
    with temporary_folder("detrt-calib-") as folder:
        source = Path(folder) / "model.onnx"
        onnx.save(model, str(source))
        calibrator = _calibrator(source, Path(folder) / "augmented.onnx", method)
        calibrator.augment_graph()
        calibrator.infer_session = create_session(onnx.load(str(calibrator.augmented_model_path)))
        for images in tqdm(batches, desc=f"calibrating ({method})", unit="batch", total=len(batches)):
            with contextlib.redirect_stdout(io.StringIO()):  # the histogram calibraters print as they go
                calibrator.collect_data(_OneBatch(images))
        with contextlib.redirect_stdout(io.StringIO()):
            return calibrator.compute_data()


def cache_key(metadata: ModelMetadata, method: str) -> dict:
    """What a calibration cache must match to be reused: weights, input, method."""
    return {"weights_sha256": metadata.weights_sha256, "input_size": list(metadata.input_size),
            "normalize_in_graph": metadata.normalize_in_graph, "msda": metadata.msda, "method": method}


def save_cache(path: str | Path, ranges, key: dict, images: int) -> Path:  # noqa: ANN001 (TensorsData)
    """Write the ranges as ONNX Runtime's JSON calibration cache, with our `detrt` entry, atomically."""
    from onnxruntime.quantization.calibrate import CalibrationCacheEncoder

    payload = {**ranges.to_dict(), "smooth_quant": False, "detrt": {**key, "images": images}}
    return write_bytes_atomic(path, json.dumps(payload, cls=CalibrationCacheEncoder).encode())


def load_cache(path: str | Path, key: dict) -> tuple[object, int]:
    """The ranges (TensorsData) of a cache written by `save_cache` for the same `key`, and how many images
    they came from; a clear error otherwise."""
    from onnxruntime.quantization.calibrate import TensorsData

    path = Path(path)
    try:
        payload = json.loads(path.read_text())
        stored = payload["detrt"]
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as error:
        raise CalibrationCacheError(f"{path} is not a detrt calibration cache ({error}); delete it or pass "
                                    "another --cache path") from None
    different = sorted(name for name in key if stored.get(name) != key[name])
    if different:
        raise CalibrationCacheError(f"calibration cache {path} was made for another model or setting (different: "
                                    f"{', '.join(different)}); delete it to calibrate again, or pass another "
                                    "--cache path")
    return TensorsData.from_dict(payload), int(stored["images"])


def quantizable_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of the nodes INT8 can take (Conv, MatMul, Gemm), in graph order."""
    return [node.name for node in model.graph.node if node.op_type in QUANTIZED_OPS]


def match_nodes(model: onnx.ModelProto, patterns: tuple[str, ...] | list[str]) -> list[str]:
    """Quantizable nodes whose names match any of `patterns` (exact names or shell-style patterns)."""
    return [name for name in quantizable_nodes(model) if any(fnmatch.fnmatchcase(name, p) for p in patterns)]


def quantize(model: onnx.ModelProto, ranges, exclude: list[str] | tuple[str, ...] = (),  # noqa: ANN001
             only: list[str] | None = None) -> onnx.ModelProto:
    """The Q/DQ graph of `model` with the calibrated `ranges` (TensorsData); `exclude` (node names) stays
    float, `only` (node names) restricts quantisation to those nodes."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    excluded = sorted(set(exclude) | {node.name for node in plugin_nodes(model)})
    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
               "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
               # Q/DQ on inputs only: by default the quantizer also rounds every Conv/MatMul/Gemm output
               # to int8 (before the bias Add, the residual, LayerNorm), which TensorRT does not need to
               # fuse INT8 kernels and which costs accuracy.
               "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS)}
    with temporary_folder("detrt-quant-") as folder:
        cache = Path(folder) / "ranges.json"
        save_cache(cache, ranges, {}, 0)  # quantize_static takes precomputed ranges through its cache file
        output = Path(folder) / "int8.onnx"
        with _quiet_root_logger():  # "consider pre-processing" warnings: shape inference is already done
            quantize_static(model, output, None, quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                            per_channel=True, reduce_range=False, activation_type=QuantType.QInt8,
                            weight_type=QuantType.QInt8, nodes_to_quantize=only or [], nodes_to_exclude=excluded,
                            calibrate_method=ranges.calibration_method, extra_options=options,
                            calibration_cache_path=cache)
        return onnx.load(str(output))


@dataclass
class Int8Report:
    """What calibration did."""

    path: Path
    method: str
    images: int
    quantized: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    cache: Path | None = None
    cache_reused: bool = False
    float_layers: str = "fp32"

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        return {"onnx": str(self.path), "precision": "int8", "method": self.method, "calibration_images": self.images,
                "quantized_layers": len(self.quantized), "excluded_layers": self.excluded,
                "float_layers": self.float_layers,
                "cache": str(self.cache) if self.cache else None, "cache_reused": self.cache_reused}


def calibrated_ranges(model: onnx.ModelProto, metadata: ModelMetadata, batches: Callable[[], ImageBatches],
                      method: str, cache: str | Path | None) -> tuple[object, int, bool]:
    """Ranges from `cache` when it exists and matches, else from calibration (then saved to `cache`).
    Returns (ranges, images used, reused)."""
    key = cache_key(metadata, method)
    if cache is not None and Path(cache).is_file():
        ranges, images = load_cache(cache, key)
        return ranges, images, True
    images = batches()
    ranges = collect_ranges(model, images, method)
    if cache is not None:
        save_cache(cache, ranges, key, images.used)
    return ranges, images.used, False


def _check_float16_scales(quantized: onnx.ModelProto) -> None:
    """Refuse scales that float16 cannot hold: below its smallest normal value they lose precision,
    and at 0 TensorRT's parser rejects the Q/DQ pair."""
    initializers = {t.name: t for t in quantized.graph.initializer}
    small = {node.output[0] for node in quantized.graph.node if node.op_type == "DequantizeLinear"
             and node.input[1] in initializers
             and numpy_helper.to_array(initializers[node.input[1]]).min() < FLOAT16.smallest_normal}
    names = sorted({node.name for node in quantized.graph.node
                    if node.op_type in QUANTIZED_OPS and small.intersection(node.input)})
    if names:
        raise InputError(f"--float-layers fp16: {len(names)} layer(s) have INT8 scales below float16's smallest "
                         f"normal value {FLOAT16.smallest_normal:.3g} ({', '.join(names[:5])}); keep them out of "
                         "INT8 with --exclude, or use --float-layers fp32")


def with_fp16_float_layers(quantized: onnx.ModelProto, keep: KeepList) -> onnx.ModelProto:
    """The Q/DQ graph with its float layers in FP16 (`keep`'s nodes stay float32): float16 Q/DQ scales,
    which ONNX has from opset 19, so DequantizeLinear yields float16 and the layers between INT8 ones
    run in FP16 in TensorRT's strongly typed network instead of float32."""
    from onnxruntime.transformers.onnx_model import OnnxModel

    _check_float16_scales(quantized)
    opset = next(o.version for o in quantized.opset_import if o.domain in ("", "ai.onnx"))
    if opset < FLOAT16_QDQ_OPSET:  # ONNX's converter rewrites what changed (Reduce* axes, Split sizes)
        quantized = version_converter.convert_version(quantized, FLOAT16_QDQ_OPSET)
    converted = to_fp16(quantized, keep)
    OnnxModel.graph_topological_sort(converted.graph)  # the converter appends its casts at the end
    return converted


def write_int8(model: onnx.ModelProto, metadata: ModelMetadata, ranges, exclude: list[str],  # noqa: ANN001
               output: str | Path, float_layers: str = "fp32") -> Path:
    """Quantize and write the INT8 graph (metadata precision "int8"); `float_layers` "fp16" puts the
    layers that stay out of INT8 in FP16 (default keep list) rather than float32."""
    if float_layers not in FLOAT_LAYER_PRECISIONS:
        raise InputError(f"unknown precision {float_layers!r} for the float layers; choose one of "
                         f"{FLOAT_LAYER_PRECISIONS}")
    quantized = quantize(model, ranges, exclude)
    if float_layers == "fp16":
        quantized = with_fp16_float_layers(quantized, KeepList.default())
    return finish(quantized, metadata, "int8", output, simplify_graph=False)
