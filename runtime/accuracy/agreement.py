"""Detection-level agreement of a candidate with a reference, strict enough to prove a precision change.

A pair is a reference and a candidate detection with the same label and IoU >= `iou` (0.9 by default),
matched one to one (highest IoU first). Confident detections (score >= `conf`) of one side are matched
against all detections of the other side, so a score of 0.51 against 0.49 is a pair, not a miss.
Precision: the share of the candidate's confident detections that pair with a reference detection;
recall: the share of the reference's confident detections that pair with a candidate detection.

`compare_detections` answers a looser question for `detrt demo` and the backend tests with the same
pairing: IoU 0.5, counts and the largest differences.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torchvision.ops import box_iou

from detrt.detectors import Detections

PAIR_IOU = 0.9
DEMO_IOU = 0.5  # compare_detections: same object, any precision-level difference
CONFIDENT = 0.5


def pair_detections(confident: Detections, pool: Detections, iou_threshold: float) -> list[tuple[int, int]]:
    """One-to-one (confident index, pool index) pairs with the same label and IoU >= threshold."""
    if len(confident) == 0 or len(pool) == 0:
        return []
    iou = box_iou(confident.boxes.float(), pool.boxes.float())
    iou[confident.labels[:, None] != pool.labels[None, :]] = 0.0
    candidates = torch.nonzero(iou >= iou_threshold).tolist()
    candidates.sort(key=lambda ij: -float(iou[ij[0], ij[1]]))
    pairs, used_i, used_j = [], set(), set()
    for i, j in candidates:
        if i not in used_i and j not in used_j:
            used_i.add(i)
            used_j.add(j)
            pairs.append((i, j))
    return pairs


@dataclass
class ImageAgreement:
    """Agreement on one image."""

    reference: int  # confident reference detections
    candidate: int  # confident candidate detections
    recalled: int  # confident reference detections with a candidate partner
    precise: int  # confident candidate detections with a reference partner
    score_deltas: list[float] = field(default_factory=list)  # candidate - reference, over recalled pairs
    box_deltas: list[float] = field(default_factory=list)  # largest coordinate difference (px), same pairs

    @property
    def f1(self) -> float:
        """2PR/(P+R) on this image (1.0 when both sides found nothing)."""
        total = self.reference + self.candidate
        return 1.0 if total == 0 else (self.recalled + self.precise) / total


def image_agreement(reference: Detections, candidate: Detections, iou: float = PAIR_IOU,
                    conf: float = CONFIDENT) -> ImageAgreement:
    """Pairs and score deltas of one image."""
    ref_confident, cand_confident = reference.above(conf), candidate.above(conf)
    recalled = pair_detections(ref_confident, candidate, iou)
    precise = pair_detections(cand_confident, reference, iou)
    deltas = [float(candidate.scores[j] - ref_confident.scores[i]) for i, j in recalled]
    boxes = [float((candidate.boxes[j] - ref_confident.boxes[i]).abs().max()) for i, j in recalled]
    return ImageAgreement(len(ref_confident), len(cand_confident), len(recalled), len(precise), deltas, boxes)


def summarize(images: list[ImageAgreement], iou: float = PAIR_IOU, conf: float = CONFIDENT) -> dict:
    """Precision, recall and score deltas over a set of images."""
    reference = sum(a.reference for a in images)
    candidate = sum(a.candidate for a in images)
    deltas = np.array([d for a in images for d in a.score_deltas], dtype=np.float64)
    return {"iou": iou, "conf": conf, "images": len(images), "reference_detections": reference,
            "candidate_detections": candidate,
            "precision": 1.0 if candidate == 0 else sum(a.precise for a in images) / candidate,
            "recall": 1.0 if reference == 0 else sum(a.recalled for a in images) / reference,
            "score_delta_mean": float(deltas.mean()) if deltas.size else 0.0,
            "score_delta_mean_abs": float(np.abs(deltas).mean()) if deltas.size else 0.0,
            "score_delta_max_abs": float(np.abs(deltas).max()) if deltas.size else 0.0,
            "images_disagreeing": sum(1 for a in images if a.f1 < 1.0)}


def compare_detections(reference: list[Detections], candidate: list[Detections], conf: float = 0.5) -> dict:
    """Matched, missed and extra confident detections at IoU >= 0.5, and the largest score and box differences."""
    images = [image_agreement(ref, cand, DEMO_IOU, conf) for ref, cand in zip(reference, candidate, strict=True)]
    matched = sum(a.recalled for a in images)
    missed = sum(a.reference for a in images) - matched
    extra = sum(a.candidate - a.precise for a in images)
    score_diff = max((abs(d) for a in images for d in a.score_deltas), default=0.0)
    box_diff = max((d for a in images for d in a.box_deltas), default=0.0)
    return {"images": len(reference), "conf": conf, "matched": matched, "missed": missed, "extra": extra,
            "max_score_diff": score_diff, "max_box_diff_px": box_diff, "agree": missed == 0 and extra == 0}
