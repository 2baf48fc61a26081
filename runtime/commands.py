"""Implementations of the `detrt` subcommands; each returns a dict that the CLI prints."""
from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def version(_: argparse.Namespace) -> dict:
    """Versions of detrt, Python and the libraries it drives."""
    names = ("detrt", "torch", "torchvision", "onnx", "onnxruntime", "tensorrt", "transformers")
    return {"python": platform.python_version(), **{name: _version_of(name) for name in names}}


def inspect(args: argparse.Namespace) -> dict:
    """The configuration and size of a checkpoint, as `detrt.detectors.load` understands it."""
    from detrt.detectors import load

    detector = load(args.checkpoint, arch=args.arch)
    parameters = sum(p.numel() for p in detector.model.parameters())
    return {"checkpoint": args.checkpoint, **detector.config.to_dict(), "parameters": parameters}


def dataset_shapes(args: argparse.Namespace) -> dict:
    """Write the synthetic shapes dataset."""
    from detrt.detectors.shapes_dataset import write_dataset

    return {"annotations": str(write_dataset(args.out, args.num, args.seed))}


def train(args: argparse.Namespace) -> dict:
    """Train the zoo configuration `args.zoo` on `args.data`."""
    from dataclasses import replace
    from pathlib import Path

    from detrt.detectors import zoo
    from detrt.detectors.train import TrainSettings, train as run_training

    entry = zoo.entry(args.zoo)
    settings = TrainSettings()
    settings = replace(settings, epochs=args.epochs or settings.epochs, batch_size=args.batch_size or settings.batch_size)
    path = run_training(entry.config, entry.preprocess, Path(args.data) / "annotations.json", Path(args.out), settings,
                        resume=not args.no_resume)
    return {"weights": str(path), "checkpoint": str(Path(args.out) / "checkpoint.pth")}


def evaluate(args: argparse.Namespace) -> dict:
    """COCO metrics of a zoo model or checkpoint."""
    import json
    from pathlib import Path

    from detrt.detectors.evaluate import evaluate_detector
    from detrt.detectors.zoo import open_model

    metrics = evaluate_detector(open_model(args.model), args.coco, args.images, args.batch_size)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(metrics, indent=2))
    return metrics


def _parse_size(text: str) -> tuple[int, int]:
    from detrt.detectors.limits import check_input_size

    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--size must look like HxW (e.g. 512x512), got {text!r}") from None
    return check_input_size((height, width), "--size")


def _parse_batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"--batch must be a positive number or 'dynamic', got {text!r}")
    return int(text)


def export(args: argparse.Namespace) -> dict:
    """Export a checkpoint, zoo model or HF model directory to ONNX."""
    from detrt.detectors import from_hf, load
    from detrt.detectors.zoo import load_zoo
    from detrt.export import ExportOptions, export_onnx

    if args.zoo:
        detector = load_zoo(args.zoo)
    elif args.hf:
        detector = from_hf(args.hf)
    else:
        detector = load(args.checkpoint, arch=args.arch)
    options = ExportOptions(msda=args.msda, batch=_parse_batch(args.batch),
                            size=_parse_size(args.size) if args.size else None, opset=args.opset, raw=args.raw,
                            normalize_in_graph=not args.no_normalize, fused=args.fused)
    report = export_onnx(detector, args.output, options,
                         progress=lambda message: print(message, file=sys.stderr, flush=True))
    return report.to_dict()
