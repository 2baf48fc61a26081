"""The `detrt convert`, `calibrate` and `compare` subcommands: arguments and handlers."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from detrt.detectors import InputError

from .errors import DetrtRuntimeError


class ComparisonFailedError(DetrtRuntimeError):
    """At least one candidate did not meet its precision's limits (the report says which and why)."""


def _images(args: argparse.Namespace) -> tuple[list[Path], list[str]]:
    """The readable images of --images/--coco (first --num); bad ones skipped, counted and logged unless --strict."""
    from detrt.calibrate import list_images, readable_images

    images, skipped = readable_images(list_images(args.images, args.coco, args.num), strict=args.strict)
    for skip in skipped:
        print(f"skipped {skip}", file=sys.stderr)
    return images, skipped


def convert(args: argparse.Namespace) -> dict:
    """FP32 export -> strongly typed FP16 graph with a keep-in-FP32 list."""
    from detrt.calibrate import KeepList, convert_fp16

    keep = KeepList.parse(args.keep_fp32 or [], defaults=not args.no_default_keep)
    images, skipped = _images(args) if args.images or args.coco else (None, [])
    limit = {} if args.fp16_limit is None else {"limit": args.fp16_limit}
    return {**convert_fp16(args.onnx, args.output, keep, images, args.batch, **limit).to_dict(),
            "skipped_images": len(skipped)}


def calibrate(args: argparse.Namespace) -> dict:
    """FP32 export + calibration images -> INT8 Q/DQ graph (and calibration cache)."""
    from detrt.calibrate import CalibrationSettings, calibrate_model

    images, skipped = _images(args)
    val_coco = args.val_coco or args.coco
    ap_of = None
    if val_coco:
        from .accuracy.onnx_accuracy import onnx_ap

        val_images = args.val_images if args.val_coco else args.images
        ap_of = lambda model: onnx_ap(model, val_coco, val_images)  # noqa: E731
    cache = Path(args.cache) if args.cache else Path(args.output).with_suffix(".calib.json")
    settings = CalibrationSettings(method=args.method, batch_size=args.batch, exclude=tuple(args.exclude or ()),
                                   cache=cache, recalibrate=args.recalibrate, sensitivity=args.sensitivity,
                                   max_ap_drop=args.max_ap_drop, sensitivity_images=args.sensitivity_images,
                                   sensitivity_layers=tuple(args.sensitivity_layers or ("*",)),
                                   float_layers=args.float_layers)
    report, analysis = calibrate_model(args.onnx, args.output, images, settings, ap_of if args.sensitivity else None)
    result = {**report.to_dict(), "skipped_images": len(skipped)}
    if analysis is not None:
        result["sensitivity"] = {"worst_layers": analysis["ranking"][:10], **analysis["budget"]}
    return result


def compare(args: argparse.Namespace) -> dict:
    """Candidates against the PyTorch reference: tensors, detections, AP; fails when one fails."""
    from .accuracy.compare import compare as run_compare
    from .accuracy.report import write_report

    if args.images is None and args.coco is None:
        raise InputError("give the images to compare on: --images DIR (and/or --coco JSON)")
    if args.hf:
        from detrt.detectors import from_hf

        reference = from_hf(args.hf)
    else:
        reference = args.reference or args.zoo
    comparison = run_compare(reference, args.candidate, args.images, args.coco, args.num, args.batch,
                             strict=args.strict)
    for skip in comparison.skipped:
        print(f"skipped {skip}", file=sys.stderr)
    files = write_report(comparison, args.out, args.json_file)
    summary = {c.name: "passed" if c.passed else "FAILED: " + "; ".join(c.failures) for c in comparison.candidates}
    if not comparison.passed:
        failed = [name for name, verdict in summary.items() if verdict != "passed"]
        verdicts = "; ".join(f"{name}: {summary[name]}" for name in failed)
        raise ComparisonFailedError(f"{len(failed)} candidate(s) failed: {verdicts} (report: {files['markdown']}, "
                                    f"{files['json']})")
    return {**summary, **files, "skipped_images": len(comparison.skipped)}


def register(sub: argparse._SubParsersAction) -> None:
    """Add convert, calibrate and compare to the `detrt` parser."""
    parser = sub.add_parser("convert", help="FP32 ONNX -> strongly typed FP16 ONNX (keep-in-FP32 list)")
    parser.add_argument("onnx", help="an FP32 ONNX written by `detrt export`")
    parser.add_argument("--precision", choices=["fp16"], required=True, help="target precision (INT8: detrt calibrate)")
    parser.add_argument("-o", "--output", required=True, help="the ONNX file to write")
    parser.add_argument("--keep-fp32", action="append", metavar="ENTRY",
                        help="also keep in FP32: a preset (plugins: the MSDA/DCN plugin nodes; sampling: MSDA "
                             "sampling locations; boxes: box refinement and decoding), an op type (Softmax) or a "
                             "node-name pattern "
                             "('/model/*/Log*'); repeatable")
    parser.add_argument("--no-default-keep", action="store_true",
                        help="drop the default keep list (LayerNormalization, and the MSDA sampling arithmetic "
                             "with float32 plugin samples)")
    check = parser.add_argument_group("range check: keep in FP32 every node that reads or writes a value beyond "
                                      "--fp16-limit on these images (recommended)")
    check.add_argument("--images", help="a folder of RGB images like those the model will see")
    check.add_argument("--coco", help="or a COCO JSON naming them")
    check.add_argument("--num", type=int, default=16, help="images to run (default 16)")
    check.add_argument("--strict", action="store_true",
                       help="stop at the first unreadable image (default: skip and count it)")
    check.add_argument("--batch", type=int, default=8, help="images per call for dynamic-batch graphs (default 8)")
    check.add_argument("--fp16-limit", type=float,
                       help="largest magnitude allowed in FP16 (default a quarter of float16's 65504)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=convert)

    parser = sub.add_parser("calibrate", help="FP32 ONNX + images -> INT8 ONNX with explicit Q/DQ (symmetric, "
                                              "per-channel weights)")
    parser.add_argument("onnx", help="an FP32 ONNX written by `detrt export`")
    parser.add_argument("-o", "--output", required=True, help="the INT8 ONNX file to write")
    source = parser.add_argument_group("calibration images (one of)")
    source.add_argument("--images", help="a folder of RGB images (or the images of --coco)")
    source.add_argument("--coco", help="a COCO JSON; its images (and annotations, for --sensitivity)")
    parser.add_argument("--num", type=int, help="use the first N images (default: all)")
    parser.add_argument("--strict", action="store_true",
                       help="stop at the first unreadable image (default: skip and count it)")
    parser.add_argument("--method", choices=["entropy", "percentile", "minmax"], default="entropy",
                        help="activation range method (default entropy)")
    parser.add_argument("--batch", type=int, default=8, help="images per calibration batch for dynamic-batch graphs")
    parser.add_argument("--cache", help="calibration cache (default OUTPUT with .calib.json): reused when it matches")
    parser.add_argument("--recalibrate", action="store_true", help="ignore and overwrite an existing cache")
    parser.add_argument("--float-layers", choices=["fp32", "fp16"], default="fp32",
                        help="precision of the layers not in INT8 (default fp32); fp16: float16 Q/DQ scales "
                             "(opset 19) and the FP16 keep list, the faster TensorRT engine")
    parser.add_argument("--exclude", action="append", metavar="NODE",
                        help="keep this Conv/MatMul/Gemm (name or pattern) out of INT8; repeatable")
    parser.add_argument("--sensitivity", action="store_true",
                        help="rank layers by their error when quantised alone and keep the worst in float until "
                             "--max-ap-drop holds (needs --coco or --val-coco)")
    parser.add_argument("--max-ap-drop", type=float, default=1.0, help="AP points (0-100) INT8 may lose (default 1.0)")
    parser.add_argument("--val-coco", help="COCO JSON for the AP budget (default: --coco)")
    parser.add_argument("--val-images", help="images folder of --val-coco (default: beside it)")
    parser.add_argument("--sensitivity-images", type=int, default=16, help="images for the layer ranking (default 16)")
    parser.add_argument("--sensitivity-layers", action="append", metavar="PATTERN",
                        help="rank only these layers (names or patterns; default all Conv/MatMul/Gemm); repeatable")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(handler=calibrate)

    parser = sub.add_parser("compare", help="candidates (ONNX, engines) against the PyTorch reference: tensors "
                                            "(polygraphy), detection agreement, mAP")
    reference = parser.add_mutually_exclusive_group(required=True)
    reference.add_argument("--reference", metavar="CHECKPOINT", help="the reference checkpoint (.pth)")
    reference.add_argument("--zoo", help="the reference as a shipped model name, e.g. shapes-deformable-detr")
    reference.add_argument("--hf", metavar="DIR", help="the reference as a HuggingFace detector directory "
                                                       "(save_pretrained), as `detrt export --hf` reads it")
    parser.add_argument("--candidate", nargs="+", required=True, metavar="MODEL",
                        help="ONNX files (fp32, fp16, int8; plugin or portable) and TensorRT engines")
    parser.add_argument("--images", help="a folder of RGB images (default with --coco: images/ beside it)")
    parser.add_argument("--coco", help="COCO annotations: also measure the mAP of each model")
    parser.add_argument("--num", type=int, help="use the first N images")
    parser.add_argument("--strict", action="store_true",
                       help="stop at the first unreadable image (default: skip and count it)")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (default 1)")
    parser.add_argument("--out", default="detrt-compare", help="folder for compare.md and worst-*.png")
    parser.add_argument("--json", dest="json_file", metavar="FILE", help="write the JSON report here "
                                                                         "(default OUT/compare.json)")
    parser.set_defaults(handler=compare)
