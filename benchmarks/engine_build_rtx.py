"""TensorRT-RTX engine builds on the CPU (ahead of time, no GPU): build time and engine size per model
and precision, as `detrt build` makes them.

Rows: the shipped model (256x256, batch 1) as plugin, fused plugin and portable FP32 graphs, the FP16
graph of `detrt convert` and the INT8 Q/DQ graphs of `detrt calibrate` (float32 and FP16 between the
INT8 layers; 16 generated calibration images); and a Deformable DETR R50 with box refinement and
two-stage at 800x1333, from a checkpoint in the original repository's format (random weights,
seeded: build time and size do not depend on the values).

    python3 benchmarks/engine_build_rtx.py --out docs/benchmarks-rtx.md
"""
from __future__ import annotations

import argparse
import datetime
import platform
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from detrt.calibrate.calibration_images import list_images
from detrt.calibrate.fp16 import convert_fp16
from detrt.calibrate.pipeline import CalibrationSettings, calibrate_model
from detrt.detectors import DetectorConfig, build_model, load
from detrt.detectors.data.shapes_dataset import write_dataset
from detrt.detectors.zoo import load_zoo
from detrt.export import ExportOptions, export_onnx
from detrt.runtime.backends.tensorrt.build import BuildOptions, build_engine
from detrt.runtime.backends.tensorrt.flavour import RTX, import_tensorrt


def original_format_checkpoint(path: Path) -> Path:
    """A Deformable DETR R50 (+ refinement, two-stage) checkpoint laid out as fundamentalvision/Deformable-DETR
    saves them: {"model": state_dict, "args": Namespace, "epoch": ...}; random weights, seeded."""
    torch.manual_seed(0)
    config = DetectorConfig.for_arch("deformable_detr", with_box_refine=True, two_stage=True)
    model = build_model(config)
    args = argparse.Namespace(backbone="resnet50", with_box_refine=True, two_stage=True, num_feature_levels=4,
                              num_queries=300, nheads=8, enc_layers=6, dec_layers=6, hidden_dim=256,
                              dim_feedforward=1024, dec_n_points=4, enc_n_points=4, dilation=False)
    torch.save({"model": model.state_dict(), "args": args, "epoch": 49}, path)
    return path


def build_row(label: str, onnx_path: Path, precision: str, folder: Path) -> dict:
    engine = folder / onnx_path.with_suffix(".engine").name
    sidecar = build_engine(onnx_path, engine, BuildOptions(flavour=RTX), progress=lambda message: None)
    print(f"{label}: {sidecar['build_seconds']} s, {engine.stat().st_size / 1e6:.1f} MB", flush=True)
    return {"model": label, "precision": precision, "onnx_mb": onnx_path.stat().st_size / 1e6,
            "engine_mb": engine.stat().st_size / 1e6, "build_s": sidecar["build_seconds"]}


def measure(folder: Path) -> list[dict]:
    shipped = load_zoo("shapes-deformable-detr")
    rows = []
    for mode, fused in (("plugin", False), ("plugin", True), ("portable", False)):
        path = folder / f"shipped-{mode}{'-fused' if fused else ''}.onnx"
        export_onnx(shipped, path, ExportOptions(msda=mode, fused=fused, batch=1))
        rows.append(build_row(f"shapes-deformable-detr, {mode}{' fused' if fused else ''}", path, "fp32", folder))
    source = folder / "shipped-plugin.onnx"
    fp16 = folder / "shipped.fp16.onnx"
    convert_fp16(source, fp16)
    rows.append(build_row("shapes-deformable-detr, plugin", fp16, "fp16", folder))
    images = list_images(coco=write_dataset(folder / "calib", 16, 2000, progress=False))
    settings = CalibrationSettings(batch_size=4, cache=folder / "calib.json")
    for label, options in (("int8", settings), ("int8, fp16 between", replace(settings, float_layers="fp16"))):
        target = folder / f"shipped.{label.replace(', ', '-').replace(' ', '_')}.onnx"
        calibrate_model(source, target, images, options)
        rows.append(build_row("shapes-deformable-detr, plugin", target, label, folder))
    checkpoint = original_format_checkpoint(folder / "r50_deformable_detr_two_stage.pth")
    big = folder / "r50-two-stage-800x1333.onnx"
    export_onnx(load(checkpoint), big, ExportOptions(msda="plugin", size=(800, 1333), batch=1))
    rows.append(build_row("Deformable DETR R50 two-stage 800x1333, plugin", big, "fp32", folder))
    return rows


def table(rows: list[dict]) -> str:
    lines = ["| model | precision | ONNX (MB) | engine (MB) | build (s) |", "|---|---|---:|---:|---:|"]
    lines += [f"| {r['model']} | {r['precision']} | {r['onnx_mb']:.1f} | {r['engine_mb']:.1f} | {r['build_s']:.1f} |"
              for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the table (markdown) here")
    args = parser.parse_args()
    tensorrt = import_tensorrt(RTX)
    with tempfile.TemporaryDirectory(prefix="detrt-rtx-bench-") as folder:
        rows = measure(Path(folder))
    header = (f"TensorRT-RTX {tensorrt.version}, default targets, {platform.processor() or platform.machine()}, "
              f"{datetime.date.today()}")
    text = f"{header}\n\n{table(rows)}\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
