"""Accuracy of the shipped model at every precision, on the held-out shapes images, in ONNX Runtime (CPU).

Exports `shapes-deformable-detr` (plugin and portable MSDA, dynamic batch), converts the plugin graph to
FP16 (default keep list; also plugin nodes kept in FP32; sampling and boxes kept), calibrates INT8 on
separate calibration images (entropy, percentile, minmax; entropy with FP16 float layers; entropy with
the sensitivity search at a tight budget), then runs `detrt compare` (PyTorch reference, every
candidate, COCO AP) over the validation set and writes the table between the result markers of
docs/precision.md, a bar chart docs/precision_ap.png and the INT8 worst-disagreement picture
docs/precision_int8_worst.jpg.

    detrt dataset shapes --out /work/data/shapes-val --num 500 --seed 1000
    detrt dataset shapes --out /work/data/shapes-calib --num 200 --seed 2000
    nice python3 benchmarks/precision_accuracy.py --val /work/data/shapes-val/annotations.json \
        --calib /work/data/shapes-calib/annotations.json --work /tmp/precision
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from detrt.calibrate.calibration_images import list_images  # noqa: E402
from detrt.calibrate.fp16 import KeepList, convert_fp16  # noqa: E402
from detrt.calibrate.pipeline import CalibrationSettings, calibrate_model  # noqa: E402
from detrt.detectors.zoo import load_zoo  # noqa: E402
from detrt.export import ExportOptions, export_onnx  # noqa: E402
from detrt.detectors.atomic import write_bytes_atomic, write_json_atomic  # noqa: E402
from detrt.runtime.accuracy.compare import compare  # noqa: E402
from detrt.runtime.accuracy.report import write_report  # noqa: E402
from detrt.runtime.accuracy.onnx_accuracy import onnx_ap  # noqa: E402

ZOO = "shapes-deformable-detr"
DOC = Path(__file__).resolve().parents[1] / "docs" / "precision.md"
START, END = "<!-- precision-results:start -->", "<!-- precision-results:end -->"


def build_candidates(work: Path, calib: Path, calib_num: int, budget: float) -> dict[str, dict]:
    """Every candidate graph, with how it was made and how long that took."""
    detector = load_zoo(ZOO)
    made: dict[str, dict] = {}

    def timed(name: str, command: str, action) -> None:  # noqa: ANN001
        start = time.perf_counter()
        extra = action() or {}
        made[name] = {"command": command, "seconds": round(time.perf_counter() - start, 1), **extra}
        print(f"{name}: {made[name]['seconds']} s", flush=True)

    plugin, portable = work / "model.onnx", work / "model.portable.onnx"
    timed("fp32 plugin", f"detrt export --zoo {ZOO} --batch dynamic -o model.onnx",
          lambda: export_onnx(detector, plugin, ExportOptions(msda="plugin", batch=None)) and None)
    timed("fp32 portable", f"detrt export --zoo {ZOO} --msda portable --batch dynamic -o model.portable.onnx",
          lambda: export_onnx(detector, portable, ExportOptions(msda="portable", batch=None)) and None)
    images = list_images(coco=calib, num=calib_num)

    def fp16_checked() -> dict:
        report = convert_fp16(plugin, work / "model.fp16.onnx", range_images=images[:16])
        return {"kept_fp32": report.kept_fp32, "kept_for_range": report.kept_for_range}

    timed("fp16", f"detrt convert model.onnx --precision fp16 --coco {calib.name} --num 16 -o model.fp16.onnx",
          fp16_checked)
    timed("fp16, plugin nodes kept fp32", "detrt convert model.onnx --precision fp16 --keep-fp32 plugins "
          "-o model.fp16-plugins32.onnx",
          lambda: {"kept_fp32": convert_fp16(plugin, work / "model.fp16-plugins32.onnx",
                                             KeepList.parse(["plugins"])).kept_fp32})
    timed("fp16 + sampling, boxes kept", "detrt convert model.onnx --precision fp16 --keep-fp32 sampling "
          "--keep-fp32 boxes -o model.fp16-keep.onnx",
          lambda: {"kept_fp32": convert_fp16(plugin, work / "model.fp16-keep.onnx",
                                             KeepList.parse(["sampling", "boxes"])).kept_fp32})

    def int8(method: str) -> dict:
        output = work / f"model.int8-{method}.onnx"
        settings = CalibrationSettings(method=method, cache=output.with_suffix(".calib.json"), recalibrate=True)
        return {"excluded": calibrate_model(plugin, output, images, settings)[0].excluded}

    for method in ("entropy", "percentile", "minmax"):
        timed(f"int8 {method}", f"detrt calibrate model.onnx --coco {calib.name} --num {calib_num} --method {method} "
              f"-o model.int8-{method}.onnx", lambda method=method: int8(method))
    mixed = work / "model.int8-fp16.onnx"

    def int8_fp16() -> dict:
        settings = CalibrationSettings(method="entropy", cache=work / "model.int8-entropy.calib.json",
                                       float_layers="fp16")
        return {"excluded": calibrate_model(plugin, mixed, images, settings)[0].excluded}

    timed("int8 entropy, fp16 float layers", f"detrt calibrate model.onnx --coco {calib.name} --num {calib_num} "
          f"--float-layers fp16 --cache model.int8-entropy.calib.json -o {mixed.name}", int8_fp16)
    output = work / "model.int8-sensitivity.onnx"

    def sensitivity() -> dict:
        settings = CalibrationSettings(method="entropy", cache=work / "model.int8-entropy.calib.json",
                                       sensitivity=True, max_ap_drop=budget)
        report, analysis = calibrate_model(plugin, output, images, settings, lambda model: onnx_ap(model, calib))
        return {"excluded": report.excluded, "sensitivity": analysis}

    timed("int8 entropy + sensitivity", f"detrt calibrate model.onnx --coco {calib.name} --num {calib_num} "
          f"--sensitivity --max-ap-drop {budget} --cache model.int8-entropy.calib.json -o {output.name}", sensitivity)
    paths = {"fp32 plugin": plugin, "fp32 portable": portable, "fp16": work / "model.fp16.onnx",
             "fp16, plugin nodes kept fp32": work / "model.fp16-plugins32.onnx",
             "fp16 + sampling, boxes kept": work / "model.fp16-keep.onnx",
             **{f"int8 {m}": work / f"model.int8-{m}.onnx" for m in ("entropy", "percentile", "minmax")},
             "int8 entropy, fp16 float layers": mixed, "int8 entropy + sensitivity": output}
    for name, path in paths.items():
        made[name]["path"] = str(path)
    return made


def keep_study(work: Path, val: Path, count: int = 32) -> str:
    """FP16 raw-output errors (probabilities, boxes in pixels) for each part of the default keep list."""
    import numpy as np

    from detrt.calibrate import fp16
    from detrt.calibrate.calibration_images import prepare
    from detrt.detectors.data.images import read_image
    from detrt.calibrate.model_files import load_fp32
    from detrt.export.ort_plugins import create_session

    path = work / "model.raw.onnx"
    export_onnx(load_zoo(ZOO), path, ExportOptions(msda="plugin", batch=None, raw=True))
    model, metadata = load_fp32(path)
    images = prepare([read_image(p) for p in list_images(coco=val, num=count)], metadata)
    reference = create_session(model).run(["pred_logits", "pred_boxes"], {"images": images})
    variants = {"nothing (plugin nodes in fp16 too)": fp16.KeepList(),
                "plugin nodes": fp16.PRESETS["plugins"],
                "LayerNormalization": fp16.KeepList(fp16.FP16_NORM_OPS),
                "Softmax": fp16.KeepList(("Softmax",)),
                "sampling locations": fp16.PRESETS["sampling"],
                "box arithmetic": fp16.PRESETS["boxes"],
                "LayerNormalization + sampling + boxes": fp16.KeepList.parse(["sampling", "boxes"]),
                "plugin nodes + LayerNormalization": fp16.KeepList.parse(["plugins"])}
    rows = ["| FP16 keep list | nodes kept | max prob. diff | mean prob. diff | max box diff (px) | "
            "mean box diff (px) |",
            "|---|---:|---:|---:|---:|---:|"]
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    for name, keep in variants.items():
        logits, boxes = create_session(fp16.to_fp16(model, keep)).run(["pred_logits", "pred_boxes"], {"images": images})
        prob = np.abs(sigmoid(logits) - sigmoid(reference[0]))
        pixels = np.abs(boxes - reference[1]) * max(metadata.input_size)
        rows.append(f"| {name} | {len(keep.nodes(model))} | {prob.max():.2e} | {prob.mean():.2e} | "
                    f"{pixels.max():.3f} | {pixels.mean():.4f} |")
    return "\n".join(rows)


def table(comparison, made: dict[str, dict]) -> str:  # noqa: ANN001
    """The markdown result table."""
    reference = comparison.reference_ap
    fp32 = next(c for c in comparison.candidates if c.path == made["fp32 plugin"]["path"])
    rows = ["| model | precision | AP | AP50 | AP vs PyTorch | AP vs FP32 ONNX | det. precision | det. recall | "
            "mean abs score delta | compare passed | layers kept out of INT8 | ms/image |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
            f"| PyTorch (reference) | fp32 | {reference['AP']:.2f} | {reference['AP50']:.2f} | | | | | | | | "
            f"{comparison.reference_ms_per_image:.0f} |"]
    for name, info in made.items():
        c = next(c for c in comparison.candidates if c.path == info["path"])
        excluded = info.get("excluded")
        kept = "-" if excluded is None else (str(len(excluded)) if excluded else "0 (all 91 quantised)")
        rows.append(f"| {name} | {c.precision} | {c.ap['AP']:.2f} | {c.ap['AP50']:.2f} | {-c.ap['drop_points']:+.2f} | "
                    f"{c.ap['AP'] - fp32.ap['AP']:+.2f} | {c.agreement['precision']:.4f} | "
                    f"{c.agreement['recall']:.4f} | {c.agreement['score_delta_mean_abs']:.4f} | "
                    f"{'yes' if c.passed else 'NO: ' + '; '.join(c.failures)} | {kept} | {c.ms_per_image:.0f} |")
    return "\n".join(rows)


def chart(comparison, made: dict[str, dict], path: Path) -> None:  # noqa: ANN001
    """Bar chart of AP per model."""
    names = ["PyTorch"] + list(made)
    by_path = {c.path: c for c in comparison.candidates}
    values = [comparison.reference_ap["AP"]] + [by_path[info["path"]].ap["AP"] for info in made.values()]
    figure, axis = plt.subplots(figsize=(9, 4))
    bars = axis.barh(names[::-1], values[::-1], color=["#4c72b0"] * (len(names) - 1) + ["#55a868"])
    axis.bar_label(bars, fmt="%.2f", padding=3)
    axis.set_xlim(min(values) - 2, max(values) + 1)
    axis.set_xlabel("COCO AP (points), 500 held-out shapes images, ONNX Runtime CPU")
    axis.set_title(f"{ZOO}: accuracy per precision")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--val", required=True, help="validation COCO JSON (held-out images)")
    parser.add_argument("--calib", required=True, help="calibration COCO JSON (other images)")
    parser.add_argument("--calib-num", type=int, default=200)
    parser.add_argument("--budget", type=float, default=0.1, help="AP points for the sensitivity row")
    parser.add_argument("--work", default="precision-work", help="folder for the graphs and reports")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--keep-study", action="store_true", help="only print the FP16 keep-list study")
    parser.add_argument("--reuse", action="store_true", help="compare the graphs of a previous run in --work again")
    args = parser.parse_args()
    if args.keep_study:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        print(keep_study(Path(args.work), Path(args.val)))
        return
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.reuse:
        made = json.loads((work / "made.json").read_text())
    else:
        made = build_candidates(work, Path(args.calib), args.calib_num, args.budget)
    comparison = compare(ZOO, [info["path"] for info in made.values()], coco=args.val, batch=args.batch)
    files = write_report(comparison, work / "compare")
    write_json_atomic(work / "made.json", json.loads(json.dumps(made, default=str)))
    result = (f"Measured {time.strftime('%Y-%m-%d')} on {len(comparison.images)} images of `{args.val}`, "
              f"calibration on {args.calib_num} images of `{args.calib}`; {'compare' if args.reuse else 'whole'} run "
              f"{(time.perf_counter() - started) / 60:.1f} min.\n\n" + table(comparison, made))
    text = DOC.read_text()
    updated = text[:text.index(START) + len(START)] + "\n" + result + "\n" + text[text.index(END):]
    write_bytes_atomic(DOC, updated.encode())
    chart(comparison, made, DOC.parent / "precision_ap.png")
    worst = next(path for key, path in files.items() if key.startswith("worst_") and "int8-entropy." in key)
    picture = cv2.imread(worst)  # JPEG: the drawings compress ~10x with no visible loss
    cv2.imwrite(str(DOC.parent / "precision_int8_worst.jpg"), picture, [cv2.IMWRITE_JPEG_QUALITY, 80])
    print(result)


if __name__ == "__main__":
    main()
