"""The detector-side `detrt` subcommands (version, inspect, dataset, train, eval, export, patch): arguments and
handlers; each handler returns a dict that the CLI prints."""
from __future__ import annotations

import argparse
import importlib.metadata
import platform
import sys

from detrt.detectors import InputError, all_architectures, architecture_names
from detrt.export import DEFAULT_OPSET, MSDA_MODES


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def version(_: argparse.Namespace) -> dict:
    """Versions of detrt, Python and the libraries it drives."""
    names = ("detrt", "torch", "torchvision", "onnx", "onnxruntime", "tensorrt", "tensorrt-rtx", "transformers")
    return {"python": platform.python_version(), **{name: _version_of(name) for name in names}}


def inspect(args: argparse.Namespace) -> dict:
    """The configuration and size of a checkpoint, as `detrt.detectors.load` understands it."""
    from detrt.detectors import load

    detector = load(args.checkpoint, arch=args.arch)
    parameters = sum(p.numel() for p in detector.model.parameters())
    return {"checkpoint": args.checkpoint, **detector.config.to_dict(), "parameters": parameters}


def dataset_shapes(args: argparse.Namespace) -> dict:
    """Write the synthetic shapes dataset."""
    from detrt.detectors import write_dataset

    return {"annotations": str(write_dataset(args.out, args.num, args.seed))}


def train(args: argparse.Namespace) -> dict:
    """Train the zoo configuration `args.zoo` on `args.data`."""
    from dataclasses import replace
    from pathlib import Path

    from detrt.detectors import TrainSettings, zoo
    from detrt.detectors import train as run_training

    entry = zoo.entry(args.zoo)
    settings = TrainSettings()
    settings = replace(settings, epochs=args.epochs or settings.epochs, batch_size=args.batch_size or settings.batch_size)
    path = run_training(entry.config, entry.preprocess, Path(args.data) / "annotations.json", Path(args.out), settings,
                        resume=not args.no_resume)
    return {"weights": str(path), "checkpoint": str(Path(args.out) / "checkpoint.pth")}


def evaluate(args: argparse.Namespace) -> dict:
    """COCO metrics of any model `runtime.open` takes: a zoo name or checkpoint (PyTorch), an ONNX (ONNX
    Runtime) or an engine (TensorRT); the result names the backend that ran."""
    import json
    from pathlib import Path

    from detrt.detectors import evaluate_detector

    from .model import CHECKPOINT_SUFFIXES, open_model

    if Path(args.model).suffix.lower() in CHECKPOINT_SUFFIXES or not Path(args.model).suffix:
        from detrt.detectors import zoo

        predict, backend, device = zoo.open_model(args.model), "pytorch", "cpu"  # the Detector: its own pre-processing
    else:
        model = open_model(args.model, device=args.device, threads=args.threads)
        predict, backend, device = model.detect, model.backend.name, model.backend.device
    metrics = {**evaluate_detector(predict, args.coco, args.images, args.batch_size), "backend": backend,
               "device": device, "model": str(args.model)}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(metrics, indent=2))
    return metrics


def _parse_size(text: str) -> tuple[int, int]:
    from detrt.detectors import check_input_size

    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size must look like HxW (e.g. 512x512), got {text!r}") from None
    return check_input_size((height, width), "--size")


def _parse_batch(text: str) -> int | None:
    if text == "dynamic":
        return None
    if not text.isdigit() or int(text) < 1:
        raise InputError(f"--batch must be a positive number or 'dynamic', got {text!r}")
    return int(text)


def export(args: argparse.Namespace) -> dict:
    """Export a checkpoint, zoo model or HF model directory to ONNX."""
    from detrt.detectors import from_hf, load, zoo
    from detrt.export import ExportOptions, export_onnx

    if args.zoo:
        detector = zoo.load_zoo(args.zoo)
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


def _parse_shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`--shape images=1x3x640x640` (repeatable) as {name: sizes}."""
    shapes = {}
    for item in items or []:
        name, _, sizes = item.rpartition("=")
        parts = sizes.lower().split("x")
        if not name or not all(part.isdigit() and int(part) > 0 for part in parts):
            raise InputError(f"--shape must be NAME=SIZExSIZEx..., e.g. images=1x3x640x640, got {item!r}")
        shapes[name] = tuple(int(part) for part in parts)
    return shapes


def patch(args: argparse.Namespace) -> dict:
    """Replace the MSDA subgraphs of an ONNX file exported by other code by detrt plugin nodes."""
    from detrt.export import patch_onnx

    report = patch_onnx(args.onnx, args.output, fused=args.fused, seed=args.seed, shapes=_parse_shapes(args.shape),
                        progress=lambda message: print(message, file=sys.stderr, flush=True))
    summary = {"source": args.onnx, "written": args.output, **report.to_dict()}
    return summary if args.json else {**summary, "replaced": "".join(f"\n  {line}" for line in report.lines())}


def architecture_titles() -> str:
    """"DETR, Conditional DETR or Deformable DETR": the registered families, for help texts."""
    titles = [architecture.title for architecture in all_architectures()]
    return ", ".join(titles[:-1]) + f" or {titles[-1]}" if len(titles) > 1 else titles[0]


def register(sub: argparse._SubParsersAction) -> None:
    """Add version, inspect, dataset, train, eval, export and patch to the `detrt` parser."""
    version_parser = sub.add_parser("version", help="print the versions of detrt and its main dependencies")
    version_parser.set_defaults(handler=version)

    inspect_parser = sub.add_parser("inspect", help="describe a checkpoint: architecture, configuration, parameters")
    inspect_parser.add_argument("checkpoint", help=f"a checkpoint of {architecture_titles()} (.pth)")
    inspect_parser.add_argument("--arch", choices=architecture_names(), help="skip detection")
    inspect_parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect_parser.set_defaults(handler=inspect)
    dataset_parser = sub.add_parser("dataset", help="generate a synthetic dataset")
    dataset_kind_parser = dataset_parser.add_subparsers(dest="kind", required=True, metavar="KIND")
    shapes_parser = dataset_kind_parser.add_parser("shapes", help="coloured shapes on textured backgrounds, COCO format")
    shapes_parser.add_argument("--out", required=True, help="output directory (images/ and annotations.json)")
    shapes_parser.add_argument("--num", type=int, required=True, help="number of images")
    shapes_parser.add_argument("--seed", type=int, required=True, help="seed: image i depends only on (seed, i)")
    shapes_parser.set_defaults(handler=dataset_shapes)

    train_parser = sub.add_parser("train", help="train a zoo detector on a COCO-format dataset (resumable)")
    train_parser.add_argument("--zoo", required=True, help="the zoo entry whose configuration to train")
    train_parser.add_argument("--data", required=True, help="dataset directory (annotations.json + images/)")
    train_parser.add_argument("--out", required=True, help="directory for checkpoint.pth")
    train_parser.add_argument("--epochs", type=int, help="override the number of epochs")
    train_parser.add_argument("--batch-size", type=int, help="override the batch size")
    train_parser.add_argument("--no-resume", action="store_true", help="start again even if OUT/checkpoint.pth exists")
    train_parser.set_defaults(handler=train)

    evaluate_parser = sub.add_parser("eval", help="COCO mAP of a model on a COCO-format dataset")
    evaluate_parser.add_argument("model", help="a zoo name, a checkpoint (.pth: PyTorch), an ONNX (ONNX Runtime) or an engine "
                                        "(TensorRT)")
    evaluate_parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (ONNX and engines; default cpu)")
    evaluate_parser.add_argument("--threads", type=int, default=0, help="CPU threads for ONNX Runtime (0: default)")
    evaluate_parser.add_argument("--coco", required=True, help="COCO annotations JSON")
    evaluate_parser.add_argument("--images", help="images directory (default: images/ beside the JSON)")
    evaluate_parser.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")
    evaluate_parser.add_argument("--batch-size", type=int, default=8)
    evaluate_parser.set_defaults(handler=evaluate)
    export_parser = sub.add_parser("export", help="export a detector to ONNX (MSDA as a TensorRT plugin node or portable)")
    source_parser = export_parser.add_mutually_exclusive_group(required=True)
    source_parser.add_argument("checkpoint", nargs="?", help="a checkpoint file (.pth)")
    source_parser.add_argument("--zoo", help="a shipped model by name, e.g. shapes-deformable-detr")
    source_parser.add_argument("--hf", metavar="DIR", help="a HuggingFace model directory (save_pretrained)")
    export_parser.add_argument("-o", "--output", required=True, help="the ONNX file to write")
    export_parser.add_argument("--arch", choices=architecture_names(),
                        help="architecture of the checkpoint (default: detected from its keys)")
    export_parser.add_argument("--msda", choices=MSDA_MODES, default="plugin",
                        help="plugin: one detrt plugin node per MSDA (default); nvidia: TensorRT's built-in "
                             "MultiscaleDeformableAttnPlugin_TRT v2; portable: GridSample ops any runtime runs")
    export_parser.add_argument("--batch", default="1", help="batch size, or 'dynamic' (default 1)")
    export_parser.add_argument("--size", help="input size HxW (default: the model's fixed pre-processing size)")
    export_parser.add_argument("--opset", type=int, default=DEFAULT_OPSET,
                        help=f"ONNX opset (default {DEFAULT_OPSET}; portable needs >= 16)")
    export_parser.add_argument("--fused", action="store_true",
                        help="plugin mode: one fused node computes sampling locations and softmax as well")
    export_parser.add_argument("--raw", action="store_true", help="also output raw pred_logits and pred_boxes")
    export_parser.add_argument("--no-normalize", action="store_true",
                        help="leave mean/std normalisation out of the graph (input is then normalised)")
    export_parser.add_argument("--json", action="store_true", help="print the report as JSON")
    export_parser.set_defaults(handler=export)

    patch_parser = sub.add_parser("patch", help="replace the MSDA subgraphs (GridSample per level) of an ONNX file "
                                                "exported by other code by detrt plugin nodes")
    patch_parser.add_argument("onnx", help="the ONNX file to patch (e.g. torch.onnx.export of a HF RT-DETR or D-FINE)")
    patch_parser.add_argument("-o", "--output", required=True, help="the patched ONNX file to write")
    patch_parser.add_argument("--fused", action="store_true",
                              help="use the fused node, which also computes the sampling locations and the softmax")
    patch_parser.add_argument("--shape", action="append", metavar="NAME=1x3xHxW",
                              help="the size of an input whose height/width are symbolic (repeatable); the plugin "
                                   "nodes are built for it and the patched file is fixed to it (the batch stays)")
    patch_parser.add_argument("--seed", type=int, default=0, help="seed of the random input of the check run")
    patch_parser.add_argument("--json", action="store_true", help="print the report as JSON")
    patch_parser.set_defaults(handler=patch)
