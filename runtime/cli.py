"""The `detrt` command line: one entry point, one subcommand per task."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable

from . import commands, runtime_commands
from . import precision_commands, triton_commands
from detrt.detectors.errors import DetrtError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand registered."""
    parser = argparse.ArgumentParser(prog="detrt", description="Export, calibrate and run DETR-family detectors.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    version = sub.add_parser("version", help="print the versions of detrt and its main dependencies")
    version.set_defaults(handler=commands.version)

    inspect = sub.add_parser("inspect", help="describe a checkpoint: architecture, configuration, parameters")
    inspect.add_argument("checkpoint", help="a checkpoint of DETR, Conditional DETR or Deformable DETR (.pth)")
    inspect.add_argument("--arch", choices=["detr", "conditional_detr", "deformable_detr"], help="skip detection")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(handler=commands.inspect)
    dataset = sub.add_parser("dataset", help="generate a synthetic dataset")
    dataset_kind = dataset.add_subparsers(dest="kind", required=True, metavar="KIND")
    shapes = dataset_kind.add_parser("shapes", help="coloured shapes on textured backgrounds, COCO format")
    shapes.add_argument("--out", required=True, help="output directory (images/ and annotations.json)")
    shapes.add_argument("--num", type=int, required=True, help="number of images")
    shapes.add_argument("--seed", type=int, required=True, help="seed: image i depends only on (seed, i)")
    shapes.set_defaults(handler=commands.dataset_shapes)

    train = sub.add_parser("train", help="train a zoo detector on a COCO-format dataset (resumable)")
    train.add_argument("--zoo", required=True, help="the zoo entry whose configuration to train")
    train.add_argument("--data", required=True, help="dataset directory (annotations.json + images/)")
    train.add_argument("--out", required=True, help="directory for checkpoint.pth")
    train.add_argument("--epochs", type=int, help="override the number of epochs")
    train.add_argument("--batch-size", type=int, help="override the batch size")
    train.add_argument("--no-resume", action="store_true", help="start again even if OUT/checkpoint.pth exists")
    train.set_defaults(handler=commands.train)

    evaluate = sub.add_parser("eval", help="COCO mAP of a model on a COCO-format dataset")
    evaluate.add_argument("model", help="a zoo name or a checkpoint file")
    evaluate.add_argument("--coco", required=True, help="COCO annotations JSON")
    evaluate.add_argument("--images", help="images directory (default: images/ beside the JSON)")
    evaluate.add_argument("--json", dest="json_out", help="also write the metrics to this JSON file")
    evaluate.add_argument("--batch-size", type=int, default=8)
    evaluate.set_defaults(handler=commands.evaluate)
    export = sub.add_parser("export", help="export a detector to ONNX (MSDA as a TensorRT plugin node or portable)")
    source = export.add_mutually_exclusive_group(required=True)
    source.add_argument("checkpoint", nargs="?", help="a checkpoint file (.pth)")
    source.add_argument("--zoo", help="a shipped model by name, e.g. shapes-deformable-detr")
    source.add_argument("--hf", metavar="DIR", help="a HuggingFace model directory (save_pretrained)")
    export.add_argument("-o", "--output", required=True, help="the ONNX file to write")
    export.add_argument("--arch", help="architecture of the checkpoint (default: detected from its keys)")
    export.add_argument("--msda", choices=["plugin", "nvidia", "portable"], default="plugin",
                        help="plugin: one detrt plugin node per MSDA (default); nvidia: TensorRT's built-in "
                             "MultiscaleDeformableAttnPlugin_TRT v2; portable: GridSample ops any runtime runs")
    export.add_argument("--batch", default="1", help="batch size, or 'dynamic' (default 1)")
    export.add_argument("--size", help="input size HxW (default: the model's fixed pre-processing size)")
    export.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; portable needs >= 16)")
    export.add_argument("--fused", action="store_true",
                        help="plugin mode: one fused node computes sampling locations and softmax as well")
    export.add_argument("--raw", action="store_true", help="also output raw pred_logits and pred_boxes")
    export.add_argument("--no-normalize", action="store_true",
                        help="leave mean/std normalisation out of the graph (input is then normalised)")
    export.add_argument("--json", action="store_true", help="print the report as JSON")
    export.set_defaults(handler=commands.export)
    runtime_commands.register(sub)  # build, run, bench, demo
    precision_commands.register(sub)  # convert, calibrate, compare
    triton_commands.register(sub)  # triton
    return parser


_TERMINATED = 128 + signal.SIGTERM
_terminated = False  # set by SIGTERM: the exit code is then _TERMINATED, whatever error the stop surfaced as


def _exit_on_sigterm() -> None:
    """SIGTERM raises SystemExit, so `finally` blocks and context managers remove temporary files. Where it
    lands inside a library (ONNX Runtime reports "initialization failed"), the flag keeps the exit code."""
    def stop(signum: int, _: object) -> None:
        global _terminated
        _terminated = True
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (errors print one line, exit 2; Ctrl-C exits 130)."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], dict] = args.handler
    if argv is None:  # the `detrt` process itself, not a caller's in-process use
        _exit_on_sigterm()
    try:
        result = handler(args)
    except (OSError, ValueError, ImportError, DetrtError) as error:
        if _terminated:
            return _TERMINATED
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"detrt {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"detrt {args.command}: stopped by the user", file=sys.stderr)
        return 130
    if _terminated:
        return _TERMINATED
    if getattr(args, "json", False):
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
