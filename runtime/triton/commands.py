"""The `detrt triton` subcommand: write a Triton Inference Server model repository."""
from __future__ import annotations

import argparse


def triton(args: argparse.Namespace) -> dict:
    """Add the model(s) serving `args.model` to the repository `args.output`."""
    from .repository import RepositoryOptions, write_repository

    options = RepositoryOptions(name=args.name, max_batch=args.max_batch, instances=args.instances,
                                backend=args.backend, device=args.device, threads=args.threads,
                                plugin_lib=args.plugin_lib)
    return write_repository(args.model, args.output, options)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `triton` to the `detrt` parser."""
    parser = sub.add_parser("triton", help="write a Triton Inference Server model repository for a model")
    parser.add_argument("model", help="an ONNX, an engine, a checkpoint (.pth) or a zoo name (what `detrt run` takes)")
    parser.add_argument("-o", "--output", required=True, help="the repository folder (created; other models in it stay)")
    parser.add_argument("--name", help="the model's name in the repository (default: the file's stem or zoo name)")
    parser.add_argument("--max-batch", type=int, default=8, help="largest batch the dynamic batcher forms (default 8)")
    parser.add_argument("--instances", type=int, default=1, help="model instances (per GPU on GPU instances; default 1)")
    parser.add_argument("--backend", default="python", metavar="{python,onnxruntime,tensorrt}",
                        help="python: detrt's runtime in a Python-backend model (default; runs on CPU-only servers "
                             "and serves plugin graphs there); onnxruntime: a portable ONNX on Triton's ONNX Runtime "
                             "backend; tensorrt: an engine on Triton's TensorRT backend (both between Python pre- and "
                             "post-processing models, as an ensemble)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda for GPU instances (engines always use a GPU)")
    parser.add_argument("--threads", type=int, default=0, help="python backend: CPU threads per instance (0: default)")
    parser.add_argument("--plugin-lib", help="tensorrt: libdetrt_trt_plugins to put beside the engine (default: searched)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=triton)
