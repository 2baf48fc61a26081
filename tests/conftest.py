"""Shared pytest configuration: markers that skip where the hardware or SDK is absent."""
from __future__ import annotations

import importlib.util

import pytest
import torch


def _tensorrt_skip_reason() -> str | None:
    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (`import tensorrt` fails); install the `trt` extra on a machine with an NVIDIA GPU"
    try:
        import tensorrt  # noqa: F401
    except Exception as error:  # a broken install must skip with its reason, not crash collection
        return f"`import tensorrt` failed: {error}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_reason = None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is false)"
    trt_reason = _tensorrt_skip_reason()
    for item in items:
        if gpu_reason and "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))
        if trt_reason and "tensorrt" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=trt_reason))
