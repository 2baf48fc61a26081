"""The synthetic shapes dataset: deterministic, valid COCO, and a reader that explains bad data."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from pycocotools.coco import COCO

from detrt.detectors.data.coco import CocoDataset, DatasetError
from detrt.detectors.data.shapes_dataset import CLASSES, write_dataset


def test_same_seed_same_bytes_and_prefix_stability(tmp_path: Path) -> None:
    first = write_dataset(tmp_path / "a", 6, seed=5, progress=False)
    second = write_dataset(tmp_path / "b", 4, seed=5, progress=False)
    other = write_dataset(tmp_path / "c", 4, seed=6, progress=False)
    for i in range(4):  # image i depends only on (seed, i)
        name = f"images/{i:06d}.png"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a/images/000000.png").read_bytes() != (tmp_path / "c/images/000000.png").read_bytes()
    a, b = json.loads(first.read_text()), json.loads(second.read_text())
    assert [x for x in a["annotations"] if x["image_id"] <= 4] == b["annotations"]
    assert json.loads(other.read_text())["annotations"] != b["annotations"]


def test_annotations_are_valid_coco(tmp_path: Path) -> None:
    path = write_dataset(tmp_path, 40, seed=2, progress=False)
    coco = COCO(str(path))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    sizes = {(im["height"], im["width"]) for im in coco.dataset["images"]}
    assert len(sizes) >= 3  # several sizes and aspect ratios
    widths = []
    for ann in coco.dataset["annotations"]:
        image = coco.imgs[ann["image_id"]]
        x, y, w, h = ann["bbox"]
        assert 0 <= x and 0 <= y and x + w <= image["width"] + 1e-6 and y + h <= image["height"] + 1e-6
        assert w > 0 and h > 0 and ann["area"] > 0 and ann["iscrowd"] == 0
        widths.append(max(w, h))
    assert min(widths) < 16 and max(widths) > 64  # small and large objects
    dataset = CocoDataset.read(path)
    image, target = dataset.load_image(0), dataset.target(0)
    assert image.shape[0] == 3 and target["boxes"].shape == (len(target["labels"]), 4)
    assert (target["boxes"] >= 0).all() and (target["boxes"] <= 1).all()


def test_bad_datasets_are_explained(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2, 3]")
    with pytest.raises(DatasetError, match="not a COCO detection file"):
        CocoDataset.read(tmp_path / "list.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(DatasetError, match="is not JSON"):
        CocoDataset.read(tmp_path / "broken.json")
    (tmp_path / "empty.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(DatasetError, match="the dataset is empty"):
        CocoDataset.read(tmp_path / "empty.json")
    path = write_dataset(tmp_path / "d", 3, seed=1, progress=False)
    (tmp_path / "d/images/000001.png").unlink()
    with pytest.raises(DatasetError, match=r"1 image\(s\) listed in .* are missing from .*000001.png"):
        CocoDataset.read(path)
    with pytest.raises(ValueError, match="--num must be at least 1"):
        write_dataset(tmp_path / "e", 0, seed=1, progress=False)
