"""Shared pytest configuration: markers that skip where the hardware or SDK is absent."""
from __future__ import annotations

import importlib.util

import pytest
import torch


def _import_skip_reason(module: str, install: str) -> str | None:
    if importlib.util.find_spec(module) is None:
        return f"`import {module}` fails; {install}"
    try:
        __import__(module)
    except Exception as error:  # a broken install must skip with its reason, not crash collection
        return f"`import {module}` failed: {error}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_reason = None if torch.cuda.is_available() else "no CUDA device (torch.cuda.is_available() is false)"
    trt_reason = _import_skip_reason("tensorrt", "install the `trt` extra on a machine with an NVIDIA GPU")
    rtx_reason = _import_skip_reason("tensorrt_rtx", "install the `rtx` extra (`pip install -e '.[rtx]'`)")
    for item in items:
        if gpu_reason and "gpu" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=gpu_reason))
        if trt_reason and "tensorrt" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=trt_reason))
        if rtx_reason and "rtx" in item.keywords:
            item.add_marker(pytest.mark.skip(reason=rtx_reason))
