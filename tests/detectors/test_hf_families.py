"""HuggingFace families that run as transformers' own module with detrt's MSDA (RT-DETR, RT-DETRv2, D-FINE,
DEIMv2, LW-DETR, RF-DETR; and DAB-DETR, which has no MSDA),
offline and with random weights: the detector, its plugin and portable exports (raw logits and boxes
against HF's forward in ONNX Runtime), a saved directory through the CLI, and the runtime on the export.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
import torch
from torch import nn

from detrt.detectors import from_hf
from detrt.export import ExportError, ExportOptions, create_session, export_onnx
from detrt.runtime.cli import main
from support.hf_models import (tiny_d_fine, tiny_dab_detr, tiny_deimv2, tiny_lw_detr, tiny_rf_detr, tiny_rt_detr,
                                tiny_rt_detr_v2)

SIZE = (192, 256)  # not square, and not the families' training sizes
ATOL = 1e-4  # the same fp32 network in two runtimes: measured at most 3e-6 apart here


@dataclass(frozen=True)
class Family:
    build: Callable[[], nn.Module]  # a tiny random-weight transformers model
    msda_nodes: int                 # MSDA modules (decoder layers)
    top_k: int                      # detections the family's post-processing keeps
    mean: tuple[float, float, float]
    fixed_size: tuple[int, int] | None  # None: shortest-edge resizing
    size: tuple[int, int] = SIZE        # the export size of these tests


FAMILIES = {
    "rt_detr": Family(tiny_rt_detr, 2, 20, (0.0, 0.0, 0.0), (640, 640)),        # k = the 20 queries; pixels / 255
    "rt_detr_v2": Family(tiny_rt_detr_v2, 2, 20, (0.0, 0.0, 0.0), (640, 640)),  # its sampling function
    "d_fine": Family(tiny_d_fine, 2, 20, (0.0, 0.0, 0.0), (640, 640)),
    "deimv2": Family(tiny_deimv2, 2, 20, (0.0, 0.0, 0.0), (640, 640)),
    "lw_detr": Family(tiny_lw_detr, 2, 50, (0.485, 0.456, 0.406), (640, 640)),  # k = min(100, 10 x 5 classes)
    "dab_detr": Family(tiny_dab_detr, 0, 50, (0.485, 0.456, 0.406), None),      # no MSDA
    # k = the 10 queries; a ViT with 14-px patches: sizes are multiples of 28, here not the 112-px table's
    "rf_detr": Family(tiny_rf_detr, 2, 10, (0.485, 0.456, 0.406), None, (224, 336)),
}


def images(size: tuple[int, int]) -> torch.Tensor:
    return torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(1))


def hf_outputs(hf: nn.Module, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        outputs = hf(pixel_values=images)
    return outputs.logits.numpy(), outputs.pred_boxes.numpy()


@pytest.mark.parametrize("arch", FAMILIES)
def test_detector_is_hf_with_detrt_msda(arch: str) -> None:
    family = FAMILIES[arch]
    inputs = images(family.size)
    logits, boxes = hf_outputs(family.build(), inputs)
    detector = from_hf(family.build())
    assert (detector.config.arch, detector.config.num_classes) == (arch, 5)
    assert detector.preprocess.fixed_size == family.fixed_size and detector.preprocess.mean == family.mean
    assert detector.class_names == [f"class{i}" for i in range(5)]
    samplers = [m for m in detector.model.modules() if type(m).__name__ in ("HFSampling", "HFSamplingV2")]
    assert len(samplers) == family.msda_nodes
    with torch.no_grad():
        ours = detector.model(inputs)
    np.testing.assert_allclose(ours["pred_logits"].numpy(), logits, rtol=0, atol=1e-5)
    np.testing.assert_allclose(ours["pred_boxes"].numpy(), boxes, rtol=0, atol=1e-5)


# D-FINE's exports are test_generalised_sampling's (points per level [3, 6, 3]); DEIMv2 takes the same
# route with one count for every level.
@pytest.mark.parametrize("arch, msda", [(arch, msda) for arch in FAMILIES if arch != "d_fine"
                                        for msda in ("plugin", "fused", "portable")
                                        if msda != "fused" or FAMILIES[arch].msda_nodes])
def test_exports_match_hf_in_onnxruntime(arch: str, msda: str, tmp_path: Path) -> None:
    """Fused: traced portable, and each MSDA subgraph then replaced by the fused node (`detrt patch --fused`)."""
    family = FAMILIES[arch]
    inputs = images(family.size)
    logits, boxes = hf_outputs(family.build(), inputs)
    path = tmp_path / f"{arch}.{msda}.onnx"
    export_onnx(from_hf(family.build()), path, ExportOptions(msda="portable" if msda == "portable" else "plugin",
                                                            fused=msda == "fused", batch=2, size=family.size,
                                                            raw=True, normalize_in_graph=False))
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    if msda != "portable" or family.msda_nodes == 0:
        node = "DetrtMultiscaleDeformableAttnFused" if msda == "fused" else "DetrtMultiscaleDeformableAttn"
        assert ops.count(node) == family.msda_nodes and "GridSample" not in ops
    else:
        assert "GridSample" in ops and not any("Deformable" in op for op in ops)
    session = create_session(path)
    outputs = dict(zip([o.name for o in session.get_outputs()],
                       session.run(None, {session.get_inputs()[0].name: inputs.numpy()})))
    assert np.abs(outputs["pred_logits"] - logits).max() < ATOL
    assert np.abs(outputs["pred_boxes"] - boxes).max() < ATOL
    # the family's post-processing: sigmoid top-k over queries x classes
    probabilities = 1 / (1 + np.exp(-logits.reshape(2, -1)))
    expected = -np.sort(-probabilities, axis=1)[:, :family.top_k]
    np.testing.assert_allclose(outputs["scores"], expected, rtol=0, atol=1e-4)


GENERALISED_SAMPLING = {  # case -> (model, its points per level, detrt's method)
    "discrete": (lambda: tiny_rt_detr_v2(method="discrete"), [4, 4, 4], "discrete"),
    "points-per-level": (lambda: tiny_d_fine(points=[3, 6, 3]), [3, 6, 3], "bilinear"),
}


@pytest.mark.parametrize("case", GENERALISED_SAMPLING)
def test_generalised_sampling_exports_as_plugin_nodes(case: str, tmp_path: Path) -> None:
    """RT-DETRv2's "discrete" method and D-FINE's point count per level become plugin nodes that carry
    them (attributes only where not the default: one count for all levels needs no list) and match HF in
    ONNX Runtime; the portable graph (a gather per level for discrete) matches too."""
    build, points, method = GENERALISED_SAMPLING[case]
    inputs = images(SIZE)
    logits, boxes = hf_outputs(build(), inputs)
    expected_attributes = {**({"points_per_level": points} if len(set(points)) > 1 else {}),
                           **({"method": method.encode()} if method != "bilinear" else {})}
    for msda in ("portable", "plugin", *(["fused"] if method == "bilinear" else [])):
        path = tmp_path / f"{msda}.onnx"
        report = export_onnx(from_hf(build()), path, ExportOptions(msda="portable" if msda == "portable" else "plugin",
                                                                   fused=msda == "fused", batch=2, size=SIZE, raw=True,
                                                                   normalize_in_graph=False))
        nodes = [node for node in onnx.load(str(path)).graph.node if "Deformable" in node.op_type]
        assert len(nodes) == (0 if msda == "portable" else 2) and len(report.msda) == 2
        for node in nodes:
            attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            assert {k: attributes[k] for k in ("points_per_level", "method") if k in attributes} == expected_attributes
        form = {"plugin": "plugin node DetrtMultiscaleDeformableAttn", "fused": "plugin node DetrtMultiscaleDeformableAttnFused",
                "portable": "portable"}[msda]
        assert all(f.startswith(form) and f"{points}, {method}" in f for f in report.msda.values()), report.msda
        session = create_session(path)
        outputs = dict(zip([o.name for o in session.get_outputs()],
                           session.run(None, {session.get_inputs()[0].name: inputs.numpy()})))
        assert np.abs(outputs["pred_logits"] - logits).max() < ATOL, msda
        assert np.abs(outputs["pred_boxes"] - boxes).max() < ATOL, msda


def test_fused_export_of_the_discrete_method_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="rt_detr_v2 samples with the discrete method.*drop --fused"):
        export_onnx(from_hf(tiny_rt_detr_v2(method="discrete")), tmp_path / "fused.onnx",
                    ExportOptions(size=SIZE, fused=True))
    assert not (tmp_path / "fused.onnx").exists()


# One family per kind of pre-processing: fixed size and /255 (RT-DETR), shortest edge padded to the
# window grid with the position table kept per size (RF-DETR), shortest edge with no MSDA (DAB-DETR).
@pytest.mark.parametrize("arch", ["rt_detr", "rf_detr", "dab_detr"])
def test_directory_through_the_cli_and_runtime(arch: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from detrt import runtime

    FAMILIES[arch].build().save_pretrained(tmp_path / "hf")
    onnx_path = tmp_path / f"{arch}.onnx"
    height, width = FAMILIES[arch].size
    assert main(["export", "--hf", str(tmp_path / "hf"), "--size", f"{height}x{width}", "-o", str(onnx_path)]) == 0
    capsys.readouterr()
    model = runtime.open(onnx_path)
    image = np.random.default_rng(2).integers(0, 255, (300, 400, 3), dtype=np.uint8)
    detections = model.detect([image])[0]
    assert len(detections.scores) == FAMILIES[arch].top_k and detections.class_names == [f"class{i}" for i in range(5)]
    scores = detections.scores.numpy()
    assert np.isfinite(detections.boxes.numpy()).all() and ((0 <= scores) & (scores <= 1)).all()
    assert (np.diff(scores) <= 0).all()  # top-k order
    assert detections.boxes[:, 2:].sub(detections.boxes[:, :2]).min() >= 0  # xyxy in the image's pixels


def test_compare_and_bench_against_the_hf_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`detrt compare --hf DIR` checks the family's exports against transformers' module (tensors,
    detections), and `detrt bench` times one; RT-DETR at its own 640x640."""
    from PIL import Image

    tiny_rt_detr().save_pretrained(tmp_path / "hf")
    plugin, portable = tmp_path / "plugin.onnx", tmp_path / "portable.onnx"
    assert main(["export", "--hf", str(tmp_path / "hf"), "-o", str(plugin)]) == 0
    assert main(["export", "--hf", str(tmp_path / "hf"), "--msda", "portable", "-o", str(portable)]) == 0
    (tmp_path / "images").mkdir()
    rng = np.random.default_rng(3)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (360, 480, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
    capsys.readouterr()
    assert main(["compare", "--hf", str(tmp_path / "hf"), "--candidate", str(plugin), str(portable),
                 "--images", str(tmp_path / "images"), "--out", str(tmp_path / "cmp")]) == 0
    report = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert {name: c["passed"] for name, c in report["candidates"].items()} == {"plugin.onnx": True,
                                                                              "portable.onnx": True}
    capsys.readouterr()
    assert main(["bench", str(plugin), "--iters", "3", "--warmup", "1", "--out", str(tmp_path / "bench"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["latency_ms"]["p50"] > 0


def test_a_directory_preprocessor_config_sets_size_mean_and_std(tmp_path: Path) -> None:
    """transformers' own processor file (RTDetrImageProcessor, RfDetrImageProcessor as saved), and ours."""
    from transformers import RfDetrImageProcessor, RTDetrImageProcessor

    tiny_rt_detr().save_pretrained(tmp_path / "rt")
    RTDetrImageProcessor(size={"height": 320, "width": 480}).save_pretrained(tmp_path / "rt")
    spec = from_hf(tmp_path / "rt").preprocess
    assert (spec.fixed_size, spec.mean, spec.std) == ((320, 480), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    tiny_rf_detr().save_pretrained(tmp_path / "rf")
    RfDetrImageProcessor(size={"height": 560, "width": 560}, image_mean=[0.5, 0.5, 0.5], image_std=0.25).save_pretrained(
        tmp_path / "rf")
    spec = from_hf(tmp_path / "rf").preprocess
    assert (spec.fixed_size, spec.mean, spec.std, spec.pad_to) == ((560, 560), (0.5,) * 3, (0.25,) * 3, 28)
    settings = json.loads((tmp_path / "rf" / "preprocessor_config.json").read_text())
    (tmp_path / "rf" / "preprocessor_config.json").write_text(json.dumps({**settings, "do_rescale": False}))
    with pytest.raises(ValueError, match="does not scale pixels by 1/255"):
        from_hf(tmp_path / "rf")

