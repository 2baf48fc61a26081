"""What a candidate of each precision must meet to pass `detrt compare`, and why.

Tensors (polygraphy `SimpleCompareFunc`, candidate against the PyTorch reference, per output):
- fp32: scores, every element within 1e-4 (float32 through ~20 layers differs by rounding order only;
  the export tests see < 2e-5). Labels exactly and boxes within 1e-4 of the input size (pixels) at the
  99th percentile: two top-k entries whose scores tie within rounding can swap rows even in float32
  (measured: once in 500 held-out images, 4 of 20,000 label elements), which a check of every element
  would call a failure; the sorted scores and the detection pairs still catch any real change.
- fp16 / int8: the top-k changes order where two scores are nearly tied, which moves whole rows of
  labels and boxes, so labels and boxes are reported but not checked element by element (detection
  agreement checks them). Scores come sorted, so their 99th-percentile difference is order-free and
  checked: fp16 rounds to 2^-11 relative per tensor, int8 steps of range/127 per layer; measured on
  the shipped model (500 held-out images, docs/precision.md): 99th percentile 3.2e-3 to 4.4e-3
  (fp16) and 5.2e-2 to 5.5e-2 (int8); the limits, 2e-2 and 0.15, leave 2.7-6x room.
Detections (runtime/detection_agreement.py, pairs at IoU >= 0.9, same label, scores >= 0.5):
  precision and recall at least `min_agreement` (measured 1.0 at every precision on the shipped model;
  limits 0.99 fp32, 0.98 fp16, 0.95 int8).
AP (with COCO annotations): the drop against the reference within `max_ap_drop` AP points (0-100),
  the acceptance limits of the precision work: 0.1 (fp32), 0.3 (fp16), 1.0 (int8); checked from
  `MIN_AP_IMAGES` images on. On fewer, one detection crossing a rank changes AP by more than these
  limits (8 images: an FP16 graph whose detections all pair with the reference's moved AP by 0.6),
  so AP is reported but not judged.
"""
from __future__ import annotations

from dataclasses import dataclass

from detrt.detectors import InputError
from polygraphy.comparator import SimpleCompareFunc

MIN_AP_IMAGES = 100


@dataclass(frozen=True)
class Policy:
    """Limits for one precision."""

    precision: str
    scores_atol: float
    scores_stat: str  # polygraphy check_error_stat for scores: elemwise | quantile
    boxes_atol_fraction: float | None  # of max(input size), at the 99th percentile; None: not checked
    labels_exact: bool  # labels equal at the 99th percentile
    min_agreement: float  # detection precision and recall
    max_ap_drop: float  # AP points

    def checked_outputs(self) -> tuple[str, ...]:
        """The outputs whose tensors must pass."""
        return ("scores",) + (("boxes",) if self.boxes_atol_fraction is not None else ()) + \
            (("labels",) if self.labels_exact else ())

    def stat_of(self, output: str) -> str:
        """Polygraphy's error statistic for `output`."""
        return self.scores_stat if output == "scores" else "quantile"

    def check_of(self, output: str) -> str:
        """How `output` is checked, in words."""
        return "99th percentile" if self.stat_of(output) == "quantile" else "every element"

    def tolerances(self, input_size: tuple[int, int]) -> dict[str, float]:
        """Absolute tolerance per checked output (boxes in pixels of the input)."""
        tolerances = {"scores": self.scores_atol}
        if self.boxes_atol_fraction is not None:
            tolerances["boxes"] = self.boxes_atol_fraction * max(input_size)
        if self.labels_exact:
            tolerances["labels"] = 0.0
        return tolerances

    def compare_func(self, input_size: tuple[int, int]) -> SimpleCompareFunc:
        """Polygraphy's comparison with these limits, over every output (unchecked ones: infinite tolerance)."""
        atol = {"": float("inf"), **self.tolerances(input_size)}
        stat = {"": "elemwise", **{output: self.stat_of(output) for output in ("scores", "labels", "boxes")}}
        return SimpleCompareFunc(atol=atol, rtol=0.0, check_error_stat=stat, error_quantile=0.99)

    def to_dict(self, input_size: tuple[int, int]) -> dict:
        """JSON-friendly limits."""
        return {"precision": self.precision, "tensor_atol": self.tolerances(input_size),
                "checks": {output: self.check_of(output) for output in self.checked_outputs()},
                "min_detection_precision_recall": self.min_agreement, "max_ap_drop_points": self.max_ap_drop}


POLICIES = {
    "fp32": Policy("fp32", 1e-4, "elemwise", 1e-4, True, 0.99, 0.1),
    "fp16": Policy("fp16", 2e-2, "quantile", None, False, 0.98, 0.3),
    "int8": Policy("int8", 0.15, "quantile", None, False, 0.95, 1.0),
}


def policy_for(precision: str) -> Policy:
    """The policy of a model's precision; a clear error for an unknown one."""
    if precision not in POLICIES:
        raise InputError(f"no comparison policy for precision {precision!r}; known: {sorted(POLICIES)}")
    return POLICIES[precision]
