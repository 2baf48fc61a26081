"""Pre-processing as tensor functions: resize, normalise, pad into a batch with a padding mask.

Images are uint8 or float tensors (3, H, W) in RGB, values 0..255. Everything here is plain torch so
that it can later be placed inside an exported graph.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import InputError
from .limits import check_input_size

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class PreprocessSpec:
    """How images become model input.

    `fixed_size` (H, W) resizes every image to exactly that size (what a fixed-shape engine needs);
    otherwise the shortest side goes to `shortest_edge` with the longest at most `longest_edge`,
    keeping the aspect ratio. Batches are zero-padded at the bottom/right to a multiple of `pad_to`.
    """

    shortest_edge: int = 800
    longest_edge: int = 1333
    fixed_size: tuple[int, int] | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    pad_to: int = 1

    def __post_init__(self) -> None:
        if self.fixed_size is not None:
            check_input_size(tuple(self.fixed_size), "the pre-processing fixed_size")
        check_input_size((self.shortest_edge, self.longest_edge), "the pre-processing (shortest_edge, longest_edge)")

    def to_dict(self) -> dict:
        """A JSON-friendly dict."""
        return {"shortest_edge": self.shortest_edge, "longest_edge": self.longest_edge,
                "fixed_size": list(self.fixed_size) if self.fixed_size else None,
                "mean": list(self.mean), "std": list(self.std), "pad_to": self.pad_to}

    @classmethod
    def from_dict(cls, data: dict) -> "PreprocessSpec":
        """Inverse of `to_dict`."""
        fixed = data.get("fixed_size")
        return cls(shortest_edge=int(data["shortest_edge"]), longest_edge=int(data["longest_edge"]),
                   fixed_size=tuple(fixed) if fixed else None, mean=tuple(data["mean"]), std=tuple(data["std"]),
                   pad_to=int(data.get("pad_to", 1)))


@dataclass
class Batch:
    """Model input for a list of images, and what is needed to map boxes back to them."""

    images: Tensor  # (N, 3, H, W) normalised, zero padded
    mask: Tensor  # (N, H, W) bool, True on padding
    original_sizes: Tensor  # (N, 2) (h, w) of each image as given
    input_sizes: Tensor  # (N, 2) (h, w) of each image after resizing, before padding


def resized_shape(height: int, width: int, spec: PreprocessSpec) -> tuple[int, int]:
    """(h, w) after resizing, by the rule of the reference repositories (shortest/longest edge)."""
    if spec.fixed_size is not None:
        return spec.fixed_size
    size = spec.shortest_edge
    short, long = float(min(height, width)), float(max(height, width))
    if long / short * size > spec.longest_edge:
        size = int(round(spec.longest_edge * short / long))
    if (width <= height and width == size) or (height <= width and height == size):
        return height, width
    if width < height:
        return int(size * height / width), size
    return size, int(size * width / height)


def to_float_image(image: Tensor) -> Tensor:
    """(3, H, W) uint8 or float 0..255 -> float32 0..1, with a clear error for other layouts."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise InputError(f"expected an RGB image tensor of shape (3, H, W), got {tuple(image.shape)}; "
                         "convert grayscale/RGBA images to RGB first")
    if image.dtype == torch.uint8:
        return image.float() / 255.0
    if not image.is_floating_point():
        raise InputError(f"image dtype {image.dtype} is not supported; use uint8 or float (0..255)")
    return image.float() / 255.0


def resize(image: Tensor, size: tuple[int, int]) -> Tensor:
    """Bilinear, antialiased resize of a float (3, H, W) image."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    return F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]


def normalize(images: Tensor, mean: tuple[float, ...], std: tuple[float, ...]) -> Tensor:
    """(x - mean) / std per channel for (..., 3, H, W) images in 0..1."""
    mean_t = torch.tensor(mean, dtype=images.dtype, device=images.device).view(3, 1, 1)
    std_t = torch.tensor(std, dtype=images.dtype, device=images.device).view(3, 1, 1)
    return (images - mean_t) / std_t


def pad_batch(images: list[Tensor], pad_to: int = 1) -> tuple[Tensor, Tensor]:
    """Stack (3, h_i, w_i) images into a zero-padded (N, 3, H, W) batch and its padding mask."""
    height = max(image.shape[1] for image in images)
    width = max(image.shape[2] for image in images)
    height, width = math.ceil(height / pad_to) * pad_to, math.ceil(width / pad_to) * pad_to
    batch = images[0].new_zeros((len(images), 3, height, width))
    mask = torch.ones((len(images), height, width), dtype=torch.bool, device=images[0].device)
    for i, image in enumerate(images):
        batch[i, :, : image.shape[1], : image.shape[2]] = image
        mask[i, : image.shape[1], : image.shape[2]] = False
    return batch, mask


def preprocess(images: list[Tensor], spec: PreprocessSpec) -> Batch:
    """Resize, normalise and pad `images` ((3, H, W), RGB, 0..255) into one `Batch`."""
    if not images:
        raise InputError("no images to pre-process")
    original, resized = [], []
    for image in images:
        image = to_float_image(image)
        size = resized_shape(int(image.shape[1]), int(image.shape[2]), spec)
        original.append(tuple(image.shape[1:]))
        resized.append(normalize(resize(image, size), spec.mean, spec.std))
    batch, mask = pad_batch(resized, spec.pad_to)
    return Batch(batch, mask, torch.tensor(original), torch.tensor([tuple(r.shape[1:]) for r in resized]))
