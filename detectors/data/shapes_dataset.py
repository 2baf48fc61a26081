"""A synthetic detection dataset of coloured shapes on textured backgrounds, in COCO format.

Deterministic from (seed, image index): image i is the same whatever the number of images asked for.
Shapes range from about 8 px to half the image, overlap a little, and may be cut by the border.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from ..atomic import write_json_atomic
from ..errors import InputError

CLASSES = ("circle", "square", "triangle", "star", "hexagon", "cross")
IMAGE_SIZES = ((192, 256), (256, 256), (256, 192), (224, 320), (320, 224), (240, 240))  # (height, width)
MIN_SIZE, MAX_OBJECTS, SMALL_FRACTION = 8, 8, 0.3


@dataclass
class ShapeObject:
    """One drawn shape: its class index and its visible box (x0, y0, x1, y1) in pixels."""

    label: int
    box: tuple[float, float, float, float]


def _polygon(label: int, cx: float, cy: float, r: float, angle: float) -> list[tuple[float, float]]:
    """Vertices of the polygonal classes (square, triangle, star, hexagon, cross) of circumradius r."""
    name = CLASSES[label]
    if name == "square":
        radii, count = [r], 4
    elif name == "triangle":
        radii, count = [r], 3
    elif name == "hexagon":
        radii, count = [r], 6
    elif name == "star":
        radii, count = [r, r * 0.45], 10
    else:  # cross: a plus sign of arm width 0.4 r
        a = 0.2 * r
        points = [(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r), (-a, -r), (-a, -a), (-r, -a), (-r, a), (-a, a), (-a, r)]
        cos, sin = math.cos(angle), math.sin(angle)
        return [(cx + x * cos - y * sin, cy + x * sin + y * cos) for x, y in points]
    return [(cx + radii[i % len(radii)] * math.cos(angle + 2 * math.pi * i / count),
             cy + radii[i % len(radii)] * math.sin(angle + 2 * math.pi * i / count)) for i in range(count)]


def _background(rng: np.random.Generator, height: int, width: int) -> Image.Image:
    """A colour gradient with noise, and sometimes stripes or blurred blobs."""
    start, end = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = np.linspace(0, 1, width if rng.random() < 0.5 else height)
    ramp = start[None] * (1 - t[:, None]) + end[None] * t[:, None]
    canvas = np.broadcast_to(ramp[None] if len(t) == width else ramp[:, None], (height, width, 3)).copy()
    texture = rng.random()
    if texture < 0.3:
        period = rng.uniform(6, 30)
        stripes = 25 * np.sin(2 * math.pi * np.arange(width) / period)[None, :, None]
        canvas += stripes
    elif texture < 0.6:  # smooth blobs: coarse noise, upsampled
        coarse = rng.normal(128, 40, (height // 24 + 2, width // 24 + 2, 3)).clip(0, 255).astype(np.uint8)
        blobs = np.asarray(Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC), dtype=np.float64)
        canvas += blobs - 128
    canvas += rng.normal(0, rng.uniform(2, 18), canvas.shape)
    return Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))


def _contrasting_colour(rng: np.random.Generator, background: np.ndarray) -> tuple[int, int, int]:
    """A random colour at least 90 (RGB distance) away from the local background."""
    for _ in range(50):
        colour = rng.integers(0, 256, 3)
        if np.linalg.norm(colour - background) > 90:
            break
    return tuple(int(c) for c in colour)


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def render(seed: int, index: int) -> tuple[Image.Image, list[ShapeObject]]:
    """Image `index` of the dataset of `seed`, with its objects."""
    rng = np.random.default_rng([seed, index])
    height, width = IMAGE_SIZES[rng.integers(len(IMAGE_SIZES))]
    image = _background(rng, height, width)
    pixels = np.asarray(image).astype(np.float64)
    draw = ImageDraw.Draw(image)
    objects: list[ShapeObject] = []
    for _ in range(rng.integers(1, MAX_OBJECTS + 1)):
        small = rng.random() < SMALL_FRACTION  # COCO "small": under 32 px
        low, high = (MIN_SIZE, 32) if small else (32, min(height, width) / 2)
        size = math.exp(rng.uniform(math.log(low), math.log(high)))
        r = size / 2
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)  # centres inside: at most half is cut off
        label = int(rng.integers(len(CLASSES)))
        angle = rng.uniform(0, 2 * math.pi)
        colour = _contrasting_colour(rng, pixels[int(min(cy, height - 1)), int(min(cx, width - 1))])
        if CLASSES[label] == "circle":
            outline = [(cx - r, cy - r), (cx + r, cy + r)]
            points = outline
        else:
            points = _polygon(label, cx, cy, r, angle)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        box = (max(0.0, min(xs)), max(0.0, min(ys)), min(float(width), max(xs)), min(float(height), max(ys)))
        if box[2] - box[0] < 4 or box[3] - box[1] < 4 or any(_iou(box, o.box) > 0.3 for o in objects):
            continue
        if any(_contains(o.box, box) or _contains(box, o.box) for o in objects):
            continue
        if CLASSES[label] == "circle":
            draw.ellipse(outline, fill=colour)
        else:
            draw.polygon(points, fill=colour)
        objects.append(ShapeObject(label, box))
    return image, objects


def _contains(outer: tuple[float, ...], inner: tuple[float, ...]) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and outer[2] >= inner[2] and outer[3] >= inner[3]


def write_dataset(out: str | Path, num: int, seed: int, progress: bool = True) -> Path:
    """Write `num` images to OUT/images and their COCO annotations to OUT/annotations.json."""
    if num < 1:
        raise InputError(f"--num must be at least 1, got {num}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index in tqdm(range(num), desc=f"shapes seed {seed}", unit="img", disable=not progress):
        image, objects = render(seed, index)
        name = f"{index:06d}.png"
        image.save(out / "images" / name)
        images.append({"id": index + 1, "file_name": name, "height": image.height, "width": image.width})
        for obj in objects:
            x0, y0, x1, y1 = obj.box
            annotations.append({"id": len(annotations) + 1, "image_id": index + 1, "category_id": obj.label + 1,
                                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                                "area": round((x1 - x0) * (y1 - y0), 2), "iscrowd": 0})
    coco = {"info": {"description": f"detrt shapes, seed {seed}", "seed": seed}, "images": images,
            "annotations": annotations,
            "categories": [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]}
    return write_json_atomic(out / "annotations.json", coco, indent=None)  # compact: thousands of boxes
