"""The CUDA kernels checked without a GPU: plugins/msda_kernels/msda_cuda.cu compiled as host C++ under the
emulation of plugins/msda_kernels/tests/cuda_emulation (blocks run one after another, each thread of a block
on its own std::thread so __syncthreads() is a real barrier; the launch limits of a GPU; dynamic
shared memory of exactly the launch's size; AddressSanitizer and UBSan on every access), then the
C++ check plugins/msda_kernels/tests/msda_check.cpp in `cuda` mode through the C ABI's CUDA entries: plain
and fused, fp32 and fp16, D 16/32/64 (vector path) and generic D and misaligned tensors (one warp
per head), unequal point counts per level and the discrete method, and the samples per head at both
edges of the kernel's shared memory, with one count and with unequal counts (the largest that fits
runs, one more is DETRT_MSDA_ERROR_PROBLEM_TOO_LARGE). Against float64: fp32 1e-5, fp16 1e-3
relative (see msda_check.cpp).

Needs CMake and a C++17 compiler; no GPU and no CUDA toolkit.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from support.processes import run

ROOT = Path(__file__).resolve().parents[2]



@pytest.mark.slow
def test_cuda_kernels_under_host_emulation_match_float64(tmp_path: Path) -> None:
    if shutil.which("cmake") is None or shutil.which("ctest") is None:
        pytest.skip("cmake and ctest are not on PATH")
    build = tmp_path / "build"
    configure = ["cmake", "-S", str(ROOT), "-B", str(build), "-DDETRT_ENABLE_CUDA=OFF", "-DDETRT_BUILD_CHECKS=ON"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    run(configure, timeout=300)
    run(["cmake", "--build", str(build), "--target", "detrt_msda_cuda_emulated_check"], timeout=600)
    output = run(["ctest", "--test-dir", str(build / "plugins"), "-R", "msda_cuda_emulated_check",
                  "--output-on-failure", "-V"], timeout=600)
    passed = re.search(r"(\d+) of (\d+) checks passed \(cuda emulated", output)
    assert passed and passed.group(1) == passed.group(2) and int(passed.group(2)) >= 40, output[-4000:]
