"""`Detections`: what a detector found in one image."""
from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class Detections:
    """Boxes (K, 4) xyxy in original-image pixels, scores (K,), labels (K,) and the class names."""

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    def above(self, threshold: float) -> "Detections":
        """Only the detections scoring at least `threshold`."""
        keep = self.scores >= threshold
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep], self.class_names)

    def names(self) -> list[str]:
        """The class name of each detection (the label number where the name is unknown)."""
        return [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in self.labels.tolist()]
