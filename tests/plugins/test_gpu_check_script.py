"""benchmarks/gpu/check.sh without a GPU: its argument checks and its --dry-run plan (the steps it
would run on a GPU machine). The GPU steps themselves only run on a machine with an NVIDIA GPU."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu" / "check.sh"
KERNEL = "transformers/kernels/deformable_detr/cuda/ms_deform_attn_cuda.cu"


def check_sh(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *arguments], capture_output=True, text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable})


@pytest.fixture
def wheel(tmp_path: Path) -> Path:
    """A stand-in for the transformers wheel: a zip holding the kernel source path."""
    path = tmp_path / "transformers-4.46.3-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(KERNEL, "// kernel")
    return path


def test_missing_out_dir_prints_usage() -> None:
    result = check_sh()
    assert result.returncode == 2 and "OUT_DIR is missing" in result.stderr and "Usage:" in result.stderr


@pytest.mark.parametrize("arguments, message", [
    (["out"], "no transformers wheel"),
    (["--wheel", "/nonexistent.whl", "out"], "does not exist"),
    (["--bogus", "out"], "unknown option --bogus"),
])
def test_bad_arguments_are_named(arguments: list[str], message: str) -> None:
    result = check_sh(*arguments)
    assert result.returncode == 2 and message in result.stderr, result.stderr


def test_a_file_without_the_kernel_sources_is_refused(tmp_path: Path) -> None:
    not_a_wheel = tmp_path / "x.whl"
    not_a_wheel.write_text("text")
    result = check_sh("--wheel", str(not_a_wheel), str(tmp_path / "out"))
    assert result.returncode == 2 and "is not a transformers wheel" in result.stderr


def test_dry_run_plans_every_step_and_writes_nothing(wheel: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = check_sh("--dry-run", "--wheel", str(wheel), str(out))
    assert result.returncode == 0, result.stderr
    steps = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in steps] == [
        "step build", "step correctness vs float64", "step compute-sanitizer memcheck",
        "step compute-sanitizer racecheck", "step original kernel sources", "step R50 benchmark"]
    assert "tests/plugins/test_msda_cuda.py" in steps[1] and "--tool racecheck" in steps[3]
    assert "--original-kernel" in steps[5] and str(out / "msda_gpu.md") in steps[5]
    assert not out.exists()
