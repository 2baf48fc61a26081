"""`Detections`: what a detector found in one image."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import DetrtError


class NonFiniteOutputError(DetrtError, ValueError):
    """A model produced NaN or infinite scores or boxes: an error, never a result."""


@dataclass
class Detections:
    """Boxes (K, 4) xyxy in original-image pixels, scores (K,), labels (K,) and the class names."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    class_names: list[str]

    def check_finite(self, what: str) -> "Detections":
        """Self, or a NonFiniteOutputError naming `what` (the model or image) when a score or box is NaN/Inf."""
        bad = int((~torch.isfinite(self.scores)).sum()) + int((~torch.isfinite(self.boxes)).any(dim=-1).sum())
        if bad:
            raise NonFiniteOutputError(f"{what} gave {bad} NaN or infinite score(s)/box(es): the model's weights or "
                                       "precision are broken (check the checkpoint, or export/convert it again)")
        return self

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def above(self, threshold: float) -> "Detections":
        """Only the detections scoring at least `threshold`."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)

    def names(self) -> list[str]:
        """The class name of each detection (the label number where the name is unknown)."""
        return [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in self.labels.tolist()]
