"""The `detrt` console script, run as users run it."""
from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import torch

from support.variants import small_config, small_model


def _detrt(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["detrt", *args], capture_output=True, text=True, timeout=300)


def test_version_lists_dependencies() -> None:
    result = _detrt("version")
    assert result.returncode == 0, result.stderr
    assert "torch: " in result.stdout and "detrt: " in result.stdout


def test_inspect_reports_the_inferred_configuration(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save({"model": small_model("conditional_detr").state_dict(), "args": argparse.Namespace(nheads=4)}, path)
    result = _detrt("inspect", str(path), "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["arch"] == "conditional_detr"
    assert report["num_queries"] == small_config("conditional_detr").num_queries
    assert report["parameters"] == sum(p.numel() for p in small_model("conditional_detr").parameters())


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    result = _detrt("inspect", str(tmp_path / "absent.pth"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"detrt inspect: error: checkpoint {tmp_path / 'absent.pth'} does not exist"
