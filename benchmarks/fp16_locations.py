"""FP16 with and without float32 sampling locations: location error in pixels and AP of the shipped model.

For each export size (the model's own 256x256, and 640x640), exports the FP32 plugin graph and converts
it to FP16 twice: with the default keep list ("with": LayerNorm, the sampling arithmetic in float32 and
float32 plugin samples) and with LayerNorm only ("without": the plugin nodes read float16 locations).
Then, in ONNX Runtime on the CPU:
- location error: every plugin node's sampling-location input, FP16 graph against the FP32 graph, in
  pixels of the level it samples (|dx| * W_l, |dy| * H_l), over the first --location-images images;
- AP (COCO, points) of the FP32 and both FP16 graphs on the held-out shapes images.
Writes a markdown table (--out) and prints it.

    python3 benchmarks/fp16_locations.py --work /tmp/fp16loc --num 200 --out /tmp/fp16loc/table.md
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import onnx

from detrt.calibrate import KeepList, convert_fp16, list_images
from detrt.calibrate.calibration_images import ImageBatches
from detrt.detectors import write_dataset, zoo
from detrt.export import (ExportOptions, create_session, element_types, export_onnx, plugin_nodes, read_metadata,
                          register_plugin_schemas)
from detrt.runtime.accuracy.onnx_accuracy import onnx_ap
from tables import write_table

ZOO = "shapes-deformable-detr"


def with_location_outputs(path: Path) -> tuple[onnx.ModelProto, list[tuple[str, list[tuple[int, int]]]]]:
    """The graph at `path` with every plugin node's location input as an extra output, and for each
    (its output name, the node's level shapes (H, W))."""
    model = onnx.load(str(path))
    register_plugin_schemas()
    types = element_types(onnx.shape_inference.infer_shapes(model))
    locations = []
    for node in plugin_nodes(model):
        shapes = next(onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == "spatial_shapes")
        locations.append((node.input[3], list(zip(shapes[0::2], shapes[1::2]))))
        model.graph.output.append(onnx.helper.make_tensor_value_info(node.input[3], types[node.input[3]], None))
    return model, locations


def location_errors(reference: Path, candidate: Path, images: list[Path]) -> tuple[float, float]:
    """Mean and largest location difference in pixels between the two graphs' plugin inputs."""
    sessions, names = [], []
    for path in (reference, candidate):
        model, locations = with_location_outputs(path)
        sessions.append(create_session(model))
        names.append(locations)
    errors = []
    for batch in ImageBatches(images, read_metadata(str(reference)), 4):
        feeds = {sessions[0].get_inputs()[0].name: batch}
        outputs = [dict(zip([o.name for o in s.get_outputs()], s.run(None, feeds))) for s in sessions]
        for (name_a, levels), (name_b, _) in zip(*names):
            a, b = outputs[0][name_a].astype(np.float64), outputs[1][name_b].astype(np.float64)
            scale = np.array([[w, h] for h, w in levels], np.float64)  # (L, 2): pixels per unit, x then y
            errors.append((np.abs(a - b) * scale[:, None, :]).reshape(-1))  # (N, Lq, M, L, P, 2)
    pixels = np.concatenate(errors)
    return float(pixels.mean()), float(pixels.max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--num", type=int, default=200, help="held-out images for AP")
    parser.add_argument("--location-images", type=int, default=16)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    coco = write_dataset(args.work / "val", args.num, seed=1000, progress=False)
    images = list_images(coco=coco, num=args.location_images)
    detector = zoo.load_zoo(ZOO)
    rows = []
    for size in ((256, 256), (640, 640)):
        tag = f"{size[0]}x{size[1]}"
        fp32 = args.work / f"model-{tag}.onnx"
        export_onnx(detector, fp32, ExportOptions(msda="plugin", batch=None, size=size))
        ap32 = onnx_ap(fp32, coco)
        for label, keep in (("with float32 locations (default)", KeepList.default()),
                            ("without (float16 locations)", KeepList(("LayerNormalization",)))):
            start = time.perf_counter()
            fp16 = args.work / f"model-{tag}-{label.split()[0]}.fp16.onnx"
            convert_fp16(fp32, fp16, keep)
            mean, largest = location_errors(fp32, fp16, images)
            ap16 = onnx_ap(fp16, coco)
            rows.append(f"| {tag} | {label} | {mean:.4f} | {largest:.3f} | {ap32:.2f} | {ap16:.2f} | {ap16 - ap32:+.2f} |")
            print(rows[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    print(write_table(args.out, f"Shipped model ({ZOO}), {args.num} held-out shapes images (seed 1000), ONNX Runtime "
                      f"CPU; location error over the plugin nodes' sampling locations of the first "
                      f"{args.location_images} images.",
                      ["export size", "FP16 graph", "location error, mean (px)", "location error, max (px)", "FP32 AP",
                       "FP16 AP", "AP change"], rows))


if __name__ == "__main__":
    main()
