"""`detrt patch` on full-size foreign exports: what it costs, and what the patched graphs cost to run.

Each family is built from transformers' default configuration with random weights (as
`hf_families.py`; D-FINE and DEIMv2 with the `[3, 6, 3]` points per level of their released
checkpoints' decoders), exported at 640x640 with plain `torch.onnx.export` (TorchScript exporter,
opset 17) as a user without detrt would, then patched to plugin nodes and to fused plugin nodes. The
table gives the time of each patch (the check runs included), the largest output difference the check
measured, and ONNX Runtime's median time on the same random image for the three graphs (the plugin
nodes run detrt's CPU kernel through onnxruntime-extensions). Writes a markdown table (--out).

    python3 benchmarks/patch_foreign.py --threads 2 --repeats 3 --work /tmp/patch_foreign --out table.md
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import transformers
from hf_families import FAMILIES, default_model, median_ms
from tables import write_table

from detrt.export import create_session, patch_onnx

SIZE = (640, 640)
POINTS = {"d_fine": [3, 6, 3], "deimv2": [3, 6, 3]}  # the released checkpoints' decoder_n_points


class Outputs(torch.nn.Module):
    """A transformers detector as (images -> logits, boxes), as users export them."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outputs = self.model(pixel_values=images)
        return outputs.logits, outputs.pred_boxes


def build(family: str) -> torch.nn.Module:
    changes = {"decoder_n_points": POINTS[family]} if family in POINTS else {}
    return default_model(*FAMILIES[family][0], **changes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="+", default=["rt_detr", "rt_detr_v2", "d_fine", "deimv2", "lw_detr"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/patch_foreign"))
    parser.add_argument("--out", type=Path, default=Path("patch_foreign.md"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    image = {"images": np.random.default_rng(0).random((1, 3, *SIZE), dtype=np.float32)}
    rows = []
    for family in args.families:
        source = args.work / f"{family}.onnx"
        print(f"{family}: exporting with torch.onnx at {SIZE[0]}x{SIZE[1]}", flush=True)
        torch.onnx.export(Outputs(build(family)).eval(), (torch.rand(1, 3, *SIZE),), str(source), opset_version=17,
                          dynamo=False, input_names=["images"], output_names=["logits", "boxes"])
        times, reports, paths = {}, {}, {"original": source}
        for form in ("plugin", "fused"):
            paths[form] = args.work / f"{family}.{form}.onnx"
            start = time.perf_counter()
            reports[form] = patch_onnx(source, paths[form], fused=form == "fused")
            times[form] = time.perf_counter() - start
            print(f"  patched ({form}) in {times[form]:.1f} s", flush=True)
        latency = {}
        for form, path in paths.items():
            session = create_session(path, threads=args.threads)
            latency[form] = median_ms(lambda s=session: s.run(None, image), args.repeats)
        report = reports["plugin"]
        points = report.replaced[0]["points_per_level"]
        rows.append(f"| {family} | {len(report.replaced)} | {points} | {times['plugin']:.1f} | {times['fused']:.1f} | "
                    f"{max(report.max_difference, reports['fused'].max_difference):.1e} | {latency['original']:.0f} | "
                    f"{latency['plugin']:.0f} | {latency['fused']:.0f} |")
    caption = (f"{platform.machine()}, {args.threads} threads; torch {torch.__version__}, transformers "
               f"{transformers.__version__}; batch 1, {SIZE[0]}x{SIZE[1]}; ONNX Runtime median of {args.repeats} after "
               "one warm-up (ms); patch times include both check runs (s).")
    header = ["family", "MSDA subgraphs", "points per level", "patch (s)", "patch --fused (s)",
              "largest output difference", "original (ms)", "patched (ms)", "patched fused (ms)"]
    print(write_table(args.out, caption, header, rows))


if __name__ == "__main__":
    main()
