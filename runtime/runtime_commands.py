"""The `detrt build`, `run`, `bench` and `demo` subcommands: arguments and handlers."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def score_threshold(text: str) -> float:
    """An argparse type: a score threshold in 0..1 (NaN refused)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return int(text)


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help="an engine (.engine: TensorRT), an ONNX (ONNX Runtime), a checkpoint (.pth) or a "
                                      "zoo name (PyTorch)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu; engines always run on a GPU)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for ONNX Runtime / PyTorch (0: default)")
    parser.add_argument("--plugin-lib", help="libdetrt_trt_plugins for engines of plugin graphs (default: searched)")
    parser.add_argument("--cuda-graph", action="store_true", help="TensorRT: replay the engine as a CUDA graph")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _open(args: argparse.Namespace):  # noqa: ANN202 (Model)
    from .model import open_model

    return open_model(args.model, device=args.device, threads=args.threads, plugin_lib=args.plugin_lib,
                      cuda_graph=args.cuda_graph)


def build(args: argparse.Namespace) -> dict:
    """Build a TensorRT engine and its sidecar from a detrt ONNX (its metadata and plugin nodes checked first)."""
    from .backends.tensorrt.build import BatchProfile, BuildOptions, build_engine
    from .backends.tensorrt.flavour import FLAVOUR_CHOICES, parse_compute_capabilities

    options = BuildOptions(batch=BatchProfile.parse(args.batch) if args.batch else None, workspace_mb=args.workspace,
                           timing_cache=Path(args.timing_cache) if args.timing_cache else None, dla_core=args.dla,
                           plugin_lib=args.plugin_lib, flavour=FLAVOUR_CHOICES[args.flavour],
                           compute_capabilities=parse_compute_capabilities(args.compute_capability))
    sidecar = build_engine(args.onnx, args.output, options, progress=_progress)
    keys = ("tensorrt_flavour", "tensorrt_version", "gpu", "compute_capability", "compute_capabilities", "precision",
            "input_shapes", "plugins", "build_seconds")
    return {"engine": args.output, **{key: sidecar[key] for key in keys if key in sidecar}}


def run(args: argparse.Namespace) -> dict:
    """Detect in an image, a directory, a video or a camera."""
    from .apps.run import run_source
    from .apps.sources import open_source

    source = open_source(args.source)  # first: a wrong source fails before the model loads
    try:
        if args.triton:
            from .triton.client import TritonDetector

            model = TritonDetector(args.triton, args.model)
        else:
            model = _open(args)
    except BaseException:
        source.close()
        raise
    return run_source(model, source, conf=args.conf, batch=args.batch, save_dir=args.save, show=args.show,
                      progress=_progress)


def bench(args: argparse.Namespace) -> dict:
    """Latency percentiles, throughput and per-stage times; writes bench.json and latency.png."""
    from .apps.bench import benchmark, write_results

    model = _open(args)
    result = benchmark(model, batch=args.batch, iters=args.iters, warmup=args.warmup, progress=_progress)
    files = write_results(result, args.out, f"{Path(args.model).name}: {model.backend.name}, batch {args.batch}")
    if args.json:
        return {**result, **files}
    return {key: result[key] for key in ("backend", "device", "batch_size", "latency_ms", "throughput_images_per_s",
                                         "stages_ms")} | files


def demo(args: argparse.Namespace) -> dict:
    """Export the shipped model, run it with the best backend here, check it against PyTorch."""
    from .apps.demo import run_demo

    summary = run_demo(args.out, count=args.images, conf=args.conf, progress=_progress)
    if args.json:
        return summary
    agreement = summary["agreement_with_pytorch"]
    return {"backend": f"{summary['backend']} on {summary['device']}", "images": summary["images"],
            "detections": summary["detections"],
            "ms_per_image": f"{summary['ms_per_image']} (PyTorch {summary['pytorch_ms_per_image']})",
            "agreement_with_pytorch": f"{'OK' if agreement['agree'] else 'DIFFERENT'}: {agreement['matched']} matched, "
                                      f"{agreement['missed']} missed, {agreement['extra']} extra; max score diff "
                                      f"{agreement['max_score_diff']:.2g}, max box diff "
                                      f"{agreement['max_box_diff_px']:.2g} px",
            "annotated": str(Path(args.out) / "images"), "summary": str(Path(args.out) / "summary.json"),
            "seconds": summary["seconds"]}


def register(sub: argparse._SubParsersAction) -> None:
    """Add build, run, bench and demo to the `detrt` parser."""
    from .backends.tensorrt.flavour import FLAVOUR_CHOICES, RTX_COMPUTE_CAPABILITIES, RTX_DEFAULT_TARGETS

    parser = sub.add_parser("build", help="build a TensorRT or TensorRT-RTX engine (+ JSON sidecar) from a detrt ONNX")
    parser.add_argument("onnx", help="an ONNX written by `detrt export` (or calibrated from one)")
    parser.add_argument("-o", "--output", required=True, help="the engine file to write")
    parser.add_argument("--plugin-lib", help="libdetrt_trt_plugins (default: $DETRT_TRT_PLUGIN_LIB, then detrt/plugins)")
    parser.add_argument("--batch", help="N or min:opt:max for a dynamic-batch ONNX (default 1:1:1)")
    parser.add_argument("--workspace", type=int, metavar="MB", help="builder workspace limit in MiB")
    parser.add_argument("--timing-cache", metavar="FILE", help="read and update this timing cache")
    parser.add_argument("--dla", type=int, metavar="N", help="build for DLA core N (GPU fallback on)")
    parser.add_argument("--flavour", choices=list(FLAVOUR_CHOICES), default="auto",
                        help="tensorrt: standard TensorRT (builds for the GPU here); rtx: TensorRT-RTX (builds ahead "
                             "of time, no GPU needed); auto (default): tensorrt where it imports, else rtx")
    parser.add_argument("--compute-capability", metavar="CC[,CC]",
                        help=f"TensorRT-RTX targets, of {', '.join(RTX_COMPUTE_CAPABILITIES)} (default: RTX's portable "
                             f"engine for {', '.join(RTX_DEFAULT_TARGETS)})")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=build)

    parser = sub.add_parser("run", help="detect in an image, a directory, a video or a camera")
    _add_model_options(parser)
    parser.add_argument("--source", required=True, help="an image, a directory of images, a video file or a camera index")
    parser.add_argument("--save", metavar="DIR", help="write annotated images (or video) and detections.jsonl here")
    parser.add_argument("--show", action="store_true", help="show annotated frames in a window (q quits)")
    parser.add_argument("--conf", type=score_threshold, default=0.5, help="minimum score, 0..1 (default 0.5)")
    parser.add_argument("--batch", type=positive_int, default=1, help="frames per inference call (default 1)")
    parser.add_argument("--triton", metavar="URL", help="send the frames to a Triton server serving a `detrt triton` "
                        "repository (MODEL is then the model's name there): http://HOST:8000 or grpc://HOST:8001")
    parser.set_defaults(handler=run)

    parser = sub.add_parser("bench", help="latency p50/p90/p99, throughput and per-stage times of a model")
    _add_model_options(parser)
    parser.add_argument("--batch", type=positive_int, default=1, help="images per call (default 1)")
    parser.add_argument("--iters", type=positive_int, default=100, help="timed runs (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed runs first (default 10)")
    parser.add_argument("--out", default="detrt-bench", help="folder for bench.json and latency.png (default detrt-bench)")
    parser.set_defaults(handler=bench)

    parser = sub.add_parser("demo", help="export the shipped model, run it with the best backend, check it against PyTorch")
    parser.add_argument("--out", default="detrt-demo", help="output folder (default detrt-demo)")
    parser.add_argument("--images", type=positive_int, default=8, help="generated images to run on (default 8)")
    parser.add_argument("--conf", type=score_threshold, default=0.5, help="minimum score drawn and compared (default 0.5)")
    parser.add_argument("--json", action="store_true", help="print the whole summary as JSON")
    parser.set_defaults(handler=demo)
