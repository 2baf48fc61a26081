"""The HuggingFace families at their default sizes on the CPU: PyTorch eager against ONNX Runtime on the
portable graph and on the plugin graph (detrt's MSDA op), batch 1, side by side in one run.

Each family is built from transformers' default configuration (`OVERRIDES` where the default does not
run) with random weights (nothing is downloaded; the speed of a network does not depend on its weights), exported at 640x640 (RF-DETR at
672x672, the nearest multiple of its 56-px window grid), and timed on the same random image: the median
of --repeats runs after one warm-up, each runner in turn. DAB-DETR has no MSDA, so its plugin column
is empty. Writes a markdown table (--out) and prints it.

    python3 benchmarks/hf_families.py --threads 2 --repeats 5 --work /tmp/hf_families --out table.md
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import transformers

from detrt.detectors import from_hf
from detrt.export import ExportError, ExportOptions, create_session, export_onnx
from tables import write_table

# transformers' defaults that do not make a working model: LW-DETR's projector has no levels by default
# (the LW-DETR small and medium checkpoints use one, at the backbone's own scale).
OVERRIDES = {"LwDetrConfig": dict(projector_scale_factors=[1.0])}
FAMILIES = {  # family -> (transformers classes, export size)
    "rt_detr": (("RTDetrConfig", "RTDetrForObjectDetection"), (640, 640)),
    "rt_detr_v2": (("RTDetrV2Config", "RTDetrV2ForObjectDetection"), (640, 640)),
    "d_fine": (("DFineConfig", "DFineForObjectDetection"), (640, 640)),
    "deimv2": (("Deimv2Config", "Deimv2ForObjectDetection"), (640, 640)),
    "lw_detr": (("LwDetrConfig", "LwDetrForObjectDetection"), (640, 640)),
    "rf_detr": (("RfDetrConfig", "RfDetrForObjectDetection"), (672, 672)),
    "dab_detr": (("DabDetrConfig", "DabDetrForObjectDetection"), (640, 640)),
}


def default_model(config_name: str, model_name: str, **changes: object) -> torch.nn.Module:
    """transformers' default configuration of a family (with `changes`), random weights, nothing downloaded."""
    config = getattr(transformers, config_name)(**{**OVERRIDES.get(config_name, {}), **changes})
    for name in ("use_pretrained_backbone", "use_timm_backbone"):
        if hasattr(config, name):
            setattr(config, name, False)
    if config_name == "DabDetrConfig":  # its default backbone is timm's; the same ResNet-50 from transformers
        config = transformers.DabDetrConfig(backbone_config=transformers.ResNetConfig(out_features=["stage4"]),
                                            use_timm_backbone=False, use_pretrained_backbone=False)
    torch.manual_seed(0)
    return getattr(transformers, model_name)(config).eval()


def median_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    for family, ((config_name, model_name), size) in FAMILIES.items():
        start = time.perf_counter()
        hf = default_model(config_name, model_name)
        image = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            eager = median_ms(lambda: hf(pixel_values=image), args.repeats)
        cells = {}
        for msda in ("portable", "plugin"):
            path = args.work / f"{family}.{msda}.onnx"
            try:
                export_onnx(from_hf(default_model(config_name, model_name)), path,
                            ExportOptions(msda=msda, batch=1, size=size, normalize_in_graph=False))
            except ExportError as error:
                cells[msda] = f"- ({str(error).split(':')[0]})"
                continue
            session = create_session(path, threads=args.threads)
            feed = {session.get_inputs()[0].name: image.numpy()}
            cells[msda] = f"{median_ms(lambda: session.run(None, feed), args.repeats):.0f}"
        if family == "dab_detr":
            cells["plugin"] = "- (no MSDA)"
        rows.append(f"| {family} | {size[0]}x{size[1]} | {eager:.0f} | {cells['portable']} | {cells['plugin']} |")
        print(rows[-1], f"({time.perf_counter() - start:.0f} s)", flush=True)
    caption = (f"{platform.processor() or platform.machine()}, {args.threads} threads; torch {torch.__version__}, "
               f"transformers {transformers.__version__}; batch 1, median of {args.repeats} after one warm-up (ms).")
    header = ["family", "input", "PyTorch eager", "ONNX Runtime, portable", "ONNX Runtime, plugin"]
    print(write_table(args.out, caption, header, rows))


if __name__ == "__main__":
    main()
