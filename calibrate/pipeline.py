"""`calibrate_model`: FP32 export + images -> INT8 Q/DQ graph, optionally with the sensitivity search."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from detrt.detectors import InputError, read_image

from .calibration_images import ImageBatches, prepare
from .int8 import Int8Report, calibrated_ranges, match_nodes, quantize, write_int8
from .model_files import load_fp32
from .sensitivity import fewest_exclusions, rank_layers

ApOf = Callable[[onnx.ModelProto], float]  # AP points of a graph on validation images


@dataclass(frozen=True)
class CalibrationSettings:
    """How to calibrate."""

    method: str = "entropy"
    batch_size: int = 8
    exclude: tuple[str, ...] = ()  # node names or patterns kept in float
    cache: Path | None = None
    recalibrate: bool = False  # ignore (and overwrite) an existing cache
    sensitivity: bool = False
    max_ap_drop: float = 1.0  # AP points, with sensitivity
    sensitivity_images: int = 16
    sensitivity_layers: tuple[str, ...] = ("*",)  # the layers the ranking considers (names or patterns)
    float_layers: str = "fp32"  # precision of the layers that stay out of INT8: fp32 or fp16


def calibrate_model(source: str | Path, output: str | Path, images: list[Path], settings: CalibrationSettings,
                    ap_of: ApOf | None = None) -> tuple[Int8Report, dict | None]:
    """Calibrate `source` on `images` and write the INT8 graph to `output`.

    With `settings.sensitivity`, `ap_of` measures AP (points) on validation images; the worst layers are
    kept in float until the AP drop against the FP32 graph is within `settings.max_ap_drop`.
    Returns the report and, with sensitivity, its ranking and budget search.
    """
    if settings.sensitivity and ap_of is None:
        raise InputError("--sensitivity needs COCO annotations to measure AP: pass --coco JSON (or --val-coco JSON)")
    model, metadata = load_fp32(source)
    excluded = match_nodes(model, settings.exclude)
    unmatched = [p for p in settings.exclude if not match_nodes(model, [p])]
    if unmatched:
        raise InputError(f"--exclude {unmatched} match no Conv/MatMul/Gemm node of {source}; its layers are named "
                         f"like {match_nodes(model, ['*'])[-3:]} (a shell pattern such as '*bbox_embed*' works)")
    batches = ImageBatches(images, metadata, settings.batch_size)  # checks the count before any work
    cache = settings.cache
    if cache is not None and settings.recalibrate:
        Path(cache).unlink(missing_ok=True)
    ranges, used, reused = calibrated_ranges(model, metadata, lambda: batches, settings.method, cache)
    analysis = None
    if settings.sensitivity:
        count = max(settings.sensitivity_images, metadata.batch or 1)  # `run` drops an incomplete fixed batch
        sample = prepare([read_image(path) for path in images[:count]], metadata)
        candidates = [name for name in match_nodes(model, settings.sensitivity_layers) if name not in excluded]
        ranking = rank_layers(model, ranges, np.ascontiguousarray(sample), metadata.batch, candidates)
        reference_ap = ap_of(model)
        budget = fewest_exclusions(ranking, lambda names: ap_of(quantize(model, ranges, excluded + names)),
                                   reference_ap, settings.max_ap_drop)
        excluded = excluded + budget.excluded
        analysis = {"ranking": [{"layer": r.layer, "op_type": r.op_type, "error": round(r.error, 6)} for r in ranking],
                    "budget": budget.to_dict()}
    path = write_int8(model, metadata, ranges, excluded, output, settings.float_layers)
    quantized = [name for name in match_nodes(model, ["*"]) if name not in excluded]
    report = Int8Report(path, settings.method, used, quantized, excluded, Path(cache) if cache else None, reused,
                        settings.float_layers)
    return report, analysis
