"""Calibration and evaluation images: found in a folder or a COCO JSON, read by the one image reader
of every command (`detrt.detectors.data.images.read_image`: EXIF orientation, any pixel format to RGB),
pre-processed exactly as the runtime pre-processes them (`detrt.runtime.model.Model.prepare`): resize
to the graph's input size (bilinear, antialiased), then x255 when the graph normalises, else mean/std
normalisation.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from detrt.detectors import CocoDataset, DetrtError, read_image
from detrt.export import ModelMetadata

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


class CalibrationDataError(DetrtError, ValueError):
    """Images that cannot be used for calibration or evaluation; the message names the file and the fix."""


def list_images(images_dir: str | Path | None = None, coco: str | Path | None = None,
                num: int | None = None) -> list[Path]:
    """Image files of a folder (sorted by name) or of a COCO JSON (in its order), the first `num` of them."""
    if images_dir is None and coco is None:
        raise CalibrationDataError("give calibration images: --images DIR or --coco JSON")
    if coco is not None:
        paths = _coco_images(Path(coco), Path(images_dir) if images_dir else None)
    else:
        folder = Path(images_dir)
        if not folder.is_dir():
            raise CalibrationDataError(f"image folder {folder} does not exist")
        paths = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise CalibrationDataError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {folder}; "
                                       "point --images at a folder of RGB images")
    if num is not None:
        if num < 1:
            raise CalibrationDataError(f"--num must be at least 1, got {num}")
        paths = paths[:num]
    return paths


def _coco_images(coco: Path, images_dir: Path | None) -> list[Path]:
    if not coco.is_file():
        raise CalibrationDataError(f"COCO file {coco} does not exist")
    dataset = CocoDataset.read(coco, images_dir)  # checks the file and that every image is there
    return [dataset.images_dir / image["file_name"] for image in dataset.images]


def readable_images(paths: list[Path], strict: bool = False) -> tuple[list[Path], list[str]]:
    """The images of `paths` that decode within the pixel limit, and "name: reason" for each one that does
    not: skipped and counted, as `detrt run` does. With `strict` the first bad image is an error."""
    kept, skipped = [], []
    for path in paths:
        try:
            read_image(path)
        except ValueError as error:
            if strict:
                raise CalibrationDataError(f"{error}; --strict stops at the first unreadable image: leave it out, or "
                                           "drop --strict to skip and count bad images") from None
            skipped.append(f"{path.name}: {error}")
            continue
        kept.append(path)
    if not kept:
        raise CalibrationDataError(f"none of the {len(paths)} image(s) can be read ({'; '.join(skipped[:3])})")
    return kept, skipped


def prepare(images: list[np.ndarray], metadata: ModelMetadata) -> np.ndarray:
    """RGB (H, W, 3) uint8 images -> the graph's ``images`` input (N, 3, H, W) float32, as the runtime makes it."""
    return torch.stack([metadata.network_input(torch.from_numpy(image).permute(2, 0, 1)) for image in images]).numpy()


@dataclass
class ImageBatches:
    """Pre-processed batches of `paths` for a graph described by `metadata`.

    A graph with a fixed batch B gets batches of exactly B (the last incomplete batch is left out);
    a dynamic graph gets batches of `batch_size` (the last may be smaller).
    """

    paths: list[Path]
    metadata: ModelMetadata
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.metadata.batch is not None:
            self.batch_size = self.metadata.batch
        if self.batch_size < 1:
            raise CalibrationDataError(f"the batch size must be at least 1, got {self.batch_size}")
        if len(self.paths) < self.batch_size:
            fixed = " (the graph's fixed batch)" if self.metadata.batch is not None else ""
            raise CalibrationDataError(f"{len(self.paths)} image(s) are fewer than one batch of {self.batch_size}"
                                       f"{fixed}; give at least {self.batch_size} images, or a smaller batch")

    @property
    def used(self) -> int:
        """How many images the batches cover."""
        if self.metadata.batch is not None:
            return len(self.paths) // self.batch_size * self.batch_size
        return len(self.paths)

    def __len__(self) -> int:
        return -(-self.used // self.batch_size)

    def __iter__(self) -> Iterator[np.ndarray]:
        for start in range(0, self.used, self.batch_size):
            chunk = self.paths[start:min(start + self.batch_size, self.used)]
            yield prepare([read_image(path) for path in chunk], self.metadata)
