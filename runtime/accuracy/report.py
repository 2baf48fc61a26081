"""The files `detrt compare` writes: JSON, a markdown summary, and per candidate an image of its worst
disagreements with the reference, side by side."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from detrt.detectors import read_image, write_bytes_atomic, write_json_atomic

from ..apps.drawing import draw_detections, save_image
from .compare import CandidateResult, Comparison
from .policy import MIN_AP_IMAGES

WORST_IMAGES = 6
PANEL = 320  # pixels of the longer side of each drawn image


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def markdown(comparison: Comparison) -> str:
    """A human summary: one table of verdicts, one of tensor errors."""
    has_ap = comparison.reference_ap is not None
    lines = [f"# detrt compare: {len(comparison.candidates)} candidate(s) against {comparison.reference}", "",
             f"{len(comparison.images)} images. Detection agreement: pairs with IoU >= 0.9 and the same label, "
             "scores >= 0.5. AP in points (0-100).", ""]
    header = ("| candidate | backend | precision | passed | det. precision | det. recall | mean abs score delta | "
              "ms/image |")
    rule = "|---|---|---|---|---:|---:|---:|---:|"
    if has_ap:
        header += " AP | AP drop |"
        rule += "---:|---:|"
        lines += [f"Reference AP {comparison.reference_ap['AP']:.2f}, AP50 {comparison.reference_ap['AP50']:.2f}. "
                  f"AP drops are judged from {MIN_AP_IMAGES} images on.", ""]
    lines += [header, rule]
    for c in comparison.candidates:
        row = (f"| {c.name} | {c.backend} | {c.precision} | {'yes' if c.passed else 'NO'} | "
               f"{c.agreement['precision']:.4f} | {c.agreement['recall']:.4f} | "
               f"{c.agreement['score_delta_mean_abs']:.2g} | {c.ms_per_image:.0f} |")
        if has_ap:
            row += f" {c.ap['AP']:.2f} | {c.ap['drop_points']:+.2f}{'' if c.ap['checked'] else ' (not judged)'} |"
        lines.append(row)
    lines += ["", "Output tensors against the reference (checked outputs must stay within atol):", "",
              "| candidate | output | checked | atol | max abs | p99 abs | mean abs |",
              "|---|---|---|---:|---:|---:|---:|"]
    for c in comparison.candidates:
        for output, stats in c.tensors.items():
            lines.append(f"| {c.name} | {output} | {'yes' if stats['checked'] else 'no'} | {_fmt(stats['atol'])} | "
                         f"{stats['max_abs']:.3g} | {stats['p99_abs']:.3g} | {stats['mean_abs']:.3g} |")
    failures = [f"- {c.name}: " + "; ".join(c.failures) for c in comparison.candidates if c.failures]
    if failures:
        lines += ["", "Failures:", "", *failures]
    return "\n".join(lines) + "\n"


def _panel(image: np.ndarray) -> np.ndarray:
    scale = PANEL / max(image.shape[:2])
    return cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                      interpolation=cv2.INTER_AREA)


def worst_disagreements(comparison: Comparison, candidate: CandidateResult, conf: float = 0.5) -> np.ndarray:
    """Rows of (reference | candidate) drawings for the images where the two agree least."""
    order = sorted(range(len(candidate.per_image)), key=lambda i: (candidate.per_image[i].f1,
                   -max((abs(d) for d in candidate.per_image[i].score_deltas), default=0.0)))
    rows = []
    for index in order[:WORST_IMAGES]:
        image = read_image(comparison.images[index])
        agreement = candidate.per_image[index]
        left = draw_detections(image, comparison.detections["pytorch"][index].above(conf), "reference (PyTorch)")
        right = draw_detections(image, comparison.detections[candidate.name][index].above(conf),
                                f"{candidate.precision} F1 {agreement.f1:.2f}")
        left, right = _panel(left), _panel(right)
        height = max(left.shape[0], right.shape[0])
        pad = [np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))) for p in (left, right)]
        rows.append(np.concatenate([pad[0], np.full((height, 6, 3), 255, np.uint8), pad[1]], axis=1))
    width = max(row.shape[1] for row in rows)
    rows = [np.pad(row, ((0, 6), (0, width - row.shape[1]), (0, 0)), constant_values=255) for row in rows]
    return np.concatenate(rows, axis=0)


def write_report(comparison: Comparison, out_dir: str | Path, json_path: str | Path | None = None) -> dict[str, str]:
    """Write compare.json (or `json_path`), compare.md and worst-<candidate>.png; returns their paths."""
    out_dir = Path(out_dir)
    files = {"json": str(write_json_atomic(json_path or out_dir / "compare.json", comparison.to_dict())),
             "markdown": str(write_bytes_atomic(out_dir / "compare.md", markdown(comparison).encode()))}
    for candidate in comparison.candidates:
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in candidate.name)
        files[f"worst_{candidate.name}"] = str(save_image(out_dir / f"worst-{safe}.png",
                                                          worst_disagreements(comparison, candidate)))
    return files
