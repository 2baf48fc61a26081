"""Small configurations of every detector variant, and their ONNX exports, shared by the tests."""
from __future__ import annotations

import functools
from pathlib import Path

import torch

from detrt.detectors import Detector, DetectorConfig, PreprocessSpec, build_model
from detrt.export import ExportOptions, export_onnx
from support.shipped import workdir

SMALL = dict(hidden_dim=64, nheads=4, enc_layers=2, dec_layers=2, dim_feedforward=128, num_queries=12,
             num_classes=7, backbone="resnet18", dropout=0.0, num_select=20)

VARIANTS: dict[str, dict] = {
    "detr": dict(arch="detr"),
    "detr-prenorm-learned": dict(arch="detr", pre_norm=True, position_embedding="learned"),
    "conditional_detr": dict(arch="conditional_detr"),
    "deformable_detr": dict(arch="deformable_detr"),
    "deformable_detr-single-scale": dict(arch="deformable_detr", num_feature_levels=1),
    "deformable_detr-refine": dict(arch="deformable_detr", with_box_refine=True),
    "deformable_detr-two-stage": dict(arch="deformable_detr", with_box_refine=True, two_stage=True),
    "deformable_detr-dc5-dcn-r50": dict(arch="deformable_detr", backbone="resnet50", dilation=True,
                                        deformable_stages=(3, 4), num_feature_levels=3, dec_n_points=2),
}


def small_config(name: str) -> DetectorConfig:
    """The small configuration of the variant `name`."""
    fields = dict(VARIANTS[name])
    return DetectorConfig.for_arch(fields.pop("arch"), **{**SMALL, **fields})


def randomize_(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter and buffer random values (frozen BN stats stay valid), so that tests
    notice a wrong mapping even where the default initialisation is zero or constant."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict(keep_vars=True).items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator) * 0.1
            if name.endswith("running_var"):
                tensor.copy_(1.0 + noise.abs())
            elif name.endswith(".weight") and tensor.dim() == 1:  # norms: keep the scale near 1
                tensor.copy_(1.0 + noise)
            else:
                tensor.copy_(noise)
    return model


def small_model(name: str, seed: int = 0) -> torch.nn.Module:
    """A randomised model of the variant `name`, in eval mode."""
    torch.manual_seed(seed)
    return randomize_(build_model(small_config(name)), seed).eval()


EXPORT_SIZE = (128, 128)


def small_detector(name: str) -> Detector:
    """The randomised variant `name` as a Detector with a fixed EXPORT_SIZE input (same weights every call)."""
    return Detector(small_model(name), small_config(name), PreprocessSpec(fixed_size=EXPORT_SIZE))


@functools.cache
def exported_variant(name: str, mode: str, fused: bool = False, batch: int | None = 2) -> Path:
    """`small_detector(name)` exported once per test process with raw outputs (opset 19 for DCN backbones)."""
    detector = small_detector(name)
    opset = 19 if detector.config.deformable_stages else 17
    path = workdir() / f"{name}-{mode}{'-fused' if fused else ''}-{batch or 'dynamic'}.onnx"
    export_onnx(detector, path, ExportOptions(msda=mode, fused=fused, batch=batch, opset=opset, raw=True))
    return path
