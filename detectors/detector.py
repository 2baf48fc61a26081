"""`Detector`: a trained model with its pre-processing, post-processing and class names."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from . import architectures
from .config import DetectorConfig
from .detections import Detections
from .errors import InputError
from .preprocess import Batch, PreprocessSpec, preprocess, resized_shape


def as_image_tensor(image: object) -> Tensor:
    """A (3, H, W) RGB tensor from a tensor, an (H, W, 3) uint8 array or a PIL image."""
    if isinstance(image, Tensor):
        return image
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise InputError(f"expected an (H, W, 3) RGB array, got shape {image.shape}")
        # torch cannot wrap read-only arrays (np.asarray of a PIL image): copy those only
        return torch.from_numpy(np.ascontiguousarray(image) if image.flags.writeable else image.copy()).permute(2, 0, 1)
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image without importing PIL here
        return as_image_tensor(np.asarray(image.convert("RGB")))
    raise TypeError(f"cannot use an object of type {type(image).__name__} as an image")


class Detector:
    """What a trained detector is, independent of where it runs.

    `detector(images)` takes RGB images ((3, H, W) tensors 0..255, (H, W, 3) uint8 arrays or PIL
    images) and returns one `Detections` per image, boxes in the images' own pixels.
    """

    def __init__(self, model: nn.Module, config: DetectorConfig, preprocess: PreprocessSpec | None = None,
                 class_names: list[str] | None = None) -> None:
        self.model = model.eval()
        self.config = config
        self.architecture = architectures.get(config.arch)
        self.preprocess = preprocess or PreprocessSpec()
        self.class_names = class_names or [str(i) for i in range(config.num_classes)]

    def postprocess(self, outputs: dict[str, Tensor], image_sizes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Raw outputs -> scores, labels, xyxy pixel boxes, by the rule of this architecture."""
        return self.architecture.postprocess(outputs["pred_logits"], outputs["pred_boxes"], image_sizes, self.config)

    @torch.inference_mode()
    def detect(self, batch: Batch) -> list[Detections]:
        """Run the model on a pre-processed batch."""
        device = next(self.model.parameters()).device
        outputs = self.model(batch.images.to(device), batch.mask.to(device))
        scores, labels, boxes = self.postprocess(outputs, batch.original_sizes.to(device))
        return [Detections(boxes[i].cpu(), scores[i].cpu(), labels[i].cpu(), self.class_names)
                for i in range(scores.shape[0])]

    def __call__(self, images: list[object] | object) -> list[Detections]:
        """Detect in each image. Images are batched only with others of the same resized shape, so an
        image's detections never depend on the rest of the batch (padding would change them: the
        backbone's convolutions and Deformable DETR's GroupNorm see the padded area)."""
        tensors = [as_image_tensor(image) for image in (images if isinstance(images, (list, tuple)) else [images])]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(tensors):
            groups.setdefault(resized_shape(int(image.shape[-2]), int(image.shape[-1]), self.preprocess), []).append(index)
        results: list[Detections | None] = [None] * len(tensors)
        for indices in groups.values():
            for index, detections in zip(indices, self.detect(preprocess([tensors[i] for i in indices], self.preprocess))):
                results[index] = detections
        return results  # type: ignore[return-value]

    def to(self, device: str | torch.device) -> "Detector":
        """Move the model to `device`."""
        self.model.to(device)
        return self
