"""How closely a candidate backend's detections follow the reference's, image by image.

A confident detection (score >= conf) on one side is matched against every detection of the other
side (any score, same label, IoU >= 0.5, one to one), so a score of 0.501 against 0.499 is a match
and not a miss. Score and box differences are taken over the matched pairs.
"""
from __future__ import annotations

from detrt.detectors import Detections

from .detection_agreement import pair_detections

MATCH_IOU = 0.5


def compare_detections(reference: list[Detections], candidate: list[Detections], conf: float = 0.5) -> dict:
    """Matched, missed and extra confident detections, and the largest score and box differences."""
    matched = missed = extra = 0
    score_diff = box_diff = 0.0
    for ref, cand in zip(reference, candidate, strict=True):
        ref_confident, cand_confident = ref.above(conf), cand.above(conf)
        pairs = pair_detections(ref_confident, cand, MATCH_IOU)
        matched += len(pairs)
        missed += len(ref_confident) - len(pairs)
        extra += len(cand_confident) - len(pair_detections(cand_confident, ref, MATCH_IOU))
        for i, j in pairs:
            score_diff = max(score_diff, abs(float(ref_confident.scores[i] - cand.scores[j])))
            box_diff = max(box_diff, float((ref_confident.boxes[i] - cand.boxes[j]).abs().max()))
    return {"images": len(reference), "conf": conf, "matched": matched, "missed": missed, "extra": extra,
            "max_score_diff": score_diff, "max_box_diff_px": box_diff, "agree": missed == 0 and extra == 0}
