"""How closely a candidate backend's detections follow the reference's, image by image.

A confident detection (score >= conf) on one side is matched against every detection of the other
side (any score, same label, IoU >= 0.5, one to one), so a score of 0.501 against 0.499 is a match
and not a miss. Score and box differences are taken over the matched pairs.
"""
from __future__ import annotations

import torch
from torchvision.ops import box_iou

from detrt.detectors import Detections

MATCH_IOU = 0.5


def _match(confident: Detections, pool: Detections) -> list[tuple[int, int]]:
    """Greedy one-to-one (confident index, pool index) pairs, highest confident score first."""
    if len(confident) == 0 or len(pool) == 0:
        return []
    iou = box_iou(confident.boxes.float(), pool.boxes.float())
    iou[confident.labels[:, None] != pool.labels[None, :]] = 0.0
    pairs, taken = [], set()
    for i in torch.argsort(confident.scores, descending=True).tolist():
        for j in torch.argsort(iou[i], descending=True).tolist():
            if iou[i, j] < MATCH_IOU:
                break
            if j not in taken:
                taken.add(j)
                pairs.append((i, j))
                break
    return pairs


def compare_detections(reference: list[Detections], candidate: list[Detections], conf: float = 0.5) -> dict:
    """Matched, missed and extra confident detections, and the largest score and box differences."""
    matched = missed = extra = 0
    score_diff = box_diff = 0.0
    for ref, cand in zip(reference, candidate, strict=True):
        ref_confident, cand_confident = ref.above(conf), cand.above(conf)
        pairs = _match(ref_confident, cand)
        matched += len(pairs)
        missed += len(ref_confident) - len(pairs)
        extra += len(cand_confident) - len(_match(cand_confident, ref))
        for i, j in pairs:
            score_diff = max(score_diff, abs(float(ref_confident.scores[i] - cand.scores[j])))
            box_diff = max(box_diff, float((ref_confident.boxes[i] - cand.boxes[j]).abs().max()))
    return {"images": len(reference), "conf": conf, "matched": matched, "missed": missed, "extra": extra,
            "max_score_diff": score_diff, "max_box_diff_px": box_diff, "agree": missed == 0 and extra == 0}
