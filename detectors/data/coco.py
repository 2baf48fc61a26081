"""Reading a COCO-format detection dataset (images + one annotations JSON), with clear errors."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import DetrtError
from .images import read_image


class DatasetError(DetrtError, ValueError):
    """A dataset that cannot be used, and why."""


@dataclass
class CocoDataset:
    """Images and annotations of a COCO JSON; labels are contiguous indices into `class_names`."""

    images_dir: Path
    images: list[dict]
    annotations: dict[int, list[dict]]
    category_ids: list[int]  # label index -> COCO category id
    class_names: list[str]

    @classmethod
    def read(cls, annotations: str | Path, images_dir: str | Path | None = None) -> "CocoDataset":
        """Read and check `annotations`; images are looked up in `images_dir` (default: ./images beside it)."""
        path = Path(annotations)
        images_dir = Path(images_dir) if images_dir else path.parent / "images"
        try:
            coco = json.loads(path.read_text())
        except FileNotFoundError:
            raise
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"{path} is not JSON: {error}") from error
        missing = [key for key in ("images", "annotations", "categories") if not isinstance(coco, dict) or key not in coco]
        if missing:
            raise DatasetError(f"{path} is not a COCO detection file: it lacks {missing} "
                               "(expected keys 'images', 'annotations', 'categories')")
        if not coco["images"]:
            raise DatasetError(f"{path} lists no images: the dataset is empty")
        absent = [im["file_name"] for im in coco["images"] if not (images_dir / im["file_name"]).is_file()]
        if absent:
            raise DatasetError(f"{len(absent)} image(s) listed in {path} are missing from {images_dir}, "
                               f"e.g. {absent[:3]}; pass the right images directory")
        categories = sorted(coco["categories"], key=lambda c: c["id"])
        by_image: dict[int, list[dict]] = {im["id"]: [] for im in coco["images"]}
        for ann in coco["annotations"]:
            if ann["image_id"] not in by_image:
                raise DatasetError(f"annotation {ann.get('id')} points at image_id {ann['image_id']}, "
                                   f"which {path} does not list")
            by_image[ann["image_id"]].append(ann)
        return cls(images_dir, coco["images"], by_image, [c["id"] for c in categories], [c["name"] for c in categories])

    def __len__(self) -> int:
        return len(self.images)

    def load_image(self, index: int) -> Tensor:
        """Image `index` as a (3, H, W) uint8 RGB tensor."""
        return torch.from_numpy(read_image(self.images_dir / self.images[index]["file_name"])).permute(2, 0, 1)

    def target(self, index: int) -> dict[str, Tensor]:
        """Labels (K,) and boxes (K, 4) as normalised cxcywh, for image `index` (crowd boxes dropped)."""
        info = self.images[index]
        anns = [a for a in self.annotations[info["id"]] if not a.get("iscrowd", 0)]
        label_of = {cid: i for i, cid in enumerate(self.category_ids)}
        boxes = torch.tensor([a["bbox"] for a in anns], dtype=torch.float32).view(-1, 4)
        w, h = float(info["width"]), float(info["height"])
        cxcywh = torch.stack([(boxes[:, 0] + boxes[:, 2] / 2) / w, (boxes[:, 1] + boxes[:, 3] / 2) / h,
                              boxes[:, 2] / w, boxes[:, 3] / h], dim=-1)
        labels = torch.tensor([label_of[a["category_id"]] for a in anns], dtype=torch.int64)
        return {"labels": labels, "boxes": cxcywh}
