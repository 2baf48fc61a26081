"""Builds libdetrt_trt_plugins (the TensorRT MSDA plugins) against the TensorRT headers named by
DETRT_TENSORRT_INCLUDE_DIR and runs its host-only test, plugins/msda/tests/msda_trt_fields_test.cpp
(creators, field validation, serialisation round trip, shape and type checks, error reporting).

Needs CMake, a C++ compiler and nvcc; neither a GPU nor the TensorRT libraries. Skipped unless
DETRT_TENSORRT_INCLUDE_DIR points at a folder with NvInfer.h, e.g. the include/ of the public
TensorRT OSS repository. The CUDA kernels are built for one architecture only (CUDAARCHS, default
80-real) to keep the build short.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV_VAR = "DETRT_TENSORRT_INCLUDE_DIR"
SKIPPED = "detrt: TensorRT plugin skipped:"


def tensorrt_include_dir() -> Path:
    value = os.environ.get(ENV_VAR, "")
    if not value:
        pytest.skip(f"{ENV_VAR} is not set; point it at a folder with TensorRT's NvInfer.h to build the TensorRT plugin")
    if not (Path(value) / "NvInfer.h").is_file():
        pytest.skip(f"{ENV_VAR}={value} holds no NvInfer.h")
    return Path(value)


def run(command: list[str], timeout: int) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(command)} failed ({result.returncode}):\n{output[-8000:]}"
    return output


@pytest.mark.slow
def test_trt_plugin_builds_and_passes_its_host_checks(tmp_path: Path) -> None:
    include = tensorrt_include_dir()
    cmake, ctest = shutil.which("cmake"), shutil.which("ctest")
    if cmake is None or ctest is None:
        pytest.skip("cmake and ctest are not on PATH")
    build = tmp_path / "build"
    configure = [cmake, "-S", str(ROOT), "-B", str(build), f"-DTENSORRT_INCLUDE_DIR={include}",
                 f"-DCMAKE_CUDA_ARCHITECTURES={os.environ.get('CUDAARCHS', '80-real')}"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    output = run(configure, timeout=600)
    skipped = [line for line in output.splitlines() if SKIPPED in line]
    if skipped:
        pytest.skip(skipped[0].split(SKIPPED, 1)[1].strip())
    run([cmake, "--build", str(build)], timeout=3600)
    assert (build / "plugins" / "libdetrt_trt_plugins.so").is_file()
    tests = run([ctest, "--test-dir", str(build / "plugins"), "--output-on-failure"], timeout=300)
    assert "100% tests passed" in tests, tests
