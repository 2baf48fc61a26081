"""Cross-builds libdetrt_plugins for aarch64 (Jetson's CPU) with plugins/cmake/aarch64-linux-gnu.cmake
and runs the C++ correctness check of the CPU kernels (plugins/msda_kernels/tests/msda_check.cpp: plain
and fused, fp32 and fp16, specialised and generic D, against float64) under qemu-aarch64, through
ctest. Correctness only: emulated timings mean nothing.

Needs CMake, Debian's g++-aarch64-linux-gnu and qemu-user (`apt-get install -y g++-aarch64-linux-gnu
qemu-user`); skipped, naming what is missing, without them.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from support.processes import run

ROOT = Path(__file__).resolve().parents[2]
TOOLCHAIN = ROOT / "plugins" / "cmake" / "aarch64-linux-gnu.cmake"
TOOLS = {"cmake": "cmake", "ctest": "cmake", "aarch64-linux-gnu-g++": "g++-aarch64-linux-gnu",
         "qemu-aarch64": "qemu-user"}



@pytest.mark.slow
def test_cpu_kernels_cross_built_for_aarch64_pass_under_qemu(tmp_path: Path) -> None:
    missing = [f"{tool} (apt package {package})" for tool, package in TOOLS.items() if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"cross build needs {', '.join(missing)}")
    build = tmp_path / "build-aarch64"
    configure = ["cmake", "-S", str(ROOT), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}",
                 "-DDETRT_ENABLE_CUDA=OFF", "-DDETRT_BUILD_CHECKS=ON", "-DCMAKE_BUILD_TYPE=Release"]
    if shutil.which("ninja"):
        configure += ["-G", "Ninja"]
    run(configure, timeout=300)
    run(["cmake", "--build", str(build)], timeout=600)
    header = (build / "plugins" / "libdetrt_plugins.so").read_bytes()[:20]
    assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == 183, "not an aarch64 ELF (EM_AARCH64)"
    output = run(["ctest", "--test-dir", str(build / "plugins"), "--output-on-failure", "-V"], timeout=300)
    passed = re.search(r"(\d+) of (\d+) checks passed", output)
    assert passed and passed.group(1) == passed.group(2) and int(passed.group(2)) >= 40, output[-4000:]
