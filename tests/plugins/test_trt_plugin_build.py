"""Builds libdetrt_trt_plugins (the TensorRT MSDA plugins) against each TensorRT header set named by
DETRT_TENSORRT_INCLUDE_DIRS (folders separated by os.pathsep; DETRT_TENSORRT_INCLUDE_DIR for one),
with warnings as errors, and runs its host-only test, plugins/msda_tensorrt/tests/msda_trt_fields_test.cpp
(creators, field validation, serialisation round trip, shape and type checks, error reporting).
Also checks how CMake reads the three styles of TensorRT version header.

Needs CMake, a C++ compiler and nvcc; neither a GPU nor the TensorRT libraries. The builds are
skipped unless header folders are named (`.ci/run` names TensorRT 10.3 and 11.1). The CUDA kernels
are built for one architecture only (CUDAARCHS, default 80-real) to keep the build short.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from support.processes import run

ROOT = Path(__file__).resolve().parents[2]
ENV_VARS = ("DETRT_TENSORRT_INCLUDE_DIRS", "DETRT_TENSORRT_INCLUDE_DIR")
SKIPPED = "detrt: TensorRT plugin skipped:"
BUILT = "detrt: TensorRT plugin libdetrt_trt_plugins ("
VERSION_MODULE = ROOT / "plugins" / "cmake" / "TensorRTVersion.cmake"


def include_dirs() -> list[str]:
    values = [os.environ.get(name, "") for name in ENV_VARS]
    return [folder for value in values for folder in value.split(os.pathsep) if folder]



def tools() -> tuple[str, str]:
    cmake, ctest = shutil.which("cmake"), shutil.which("ctest")
    if cmake is None or ctest is None:
        pytest.skip("cmake and ctest are not on PATH")
    return cmake, ctest


def configure(cmake: str, include: Path, build: Path) -> str:
    command = [cmake, "-S", str(ROOT), "-B", str(build), f"-DTENSORRT_INCLUDE_DIR={include}",
               f"-DCMAKE_CUDA_ARCHITECTURES={os.environ.get('CUDAARCHS', '80-real')}"]
    if shutil.which("ninja"):
        command += ["-G", "Ninja"]
    output = run(command, timeout=600)
    skipped = [line for line in output.splitlines() if SKIPPED in line]
    if skipped:
        pytest.skip(skipped[0].split(SKIPPED, 1)[1].strip())
    return output


@pytest.mark.slow
@pytest.mark.parametrize("include", include_dirs() or [None], ids=lambda folder: str(folder))
def test_trt_plugin_builds_and_passes_its_host_checks(include: str | None, tmp_path: Path) -> None:
    if include is None:
        pytest.skip(f"{' and '.join(ENV_VARS)} are unset; name folders with TensorRT's NvInfer.h to build the plugin")
    if not (Path(include) / "NvInfer.h").is_file():
        pytest.fail(f"{include} (from {ENV_VARS[0]}) holds no NvInfer.h")
    cmake, ctest = tools()
    build = tmp_path / "build"
    assert BUILT in configure(cmake, Path(include), build)
    run([cmake, "--build", str(build)], timeout=3600)
    assert (build / "plugins" / "libdetrt_trt_plugins.so").is_file()
    tests = run([ctest, "--test-dir", str(build / "plugins"), "--output-on-failure"], timeout=300)
    assert "100% tests passed" in tests, tests


VERSION_HEADERS = {
    "TensorRT 10.3.0": "#define NV_TENSORRT_MAJOR 10 //!< major\n#define NV_TENSORRT_MINOR 3\n#define NV_TENSORRT_PATCH 0\n",
    "TensorRT 11.1.0": ("#define TRT_MAJOR_ENTERPRISE 11\n#define TRT_MINOR_ENTERPRISE 1\n#define TRT_PATCH_ENTERPRISE 0\n"
                        "#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE\n"),
    "TensorRT-RTX 1.7.1": ("#define TRT_MAJOR_RTX 1\n#define TRT_MINOR_RTX 7\n#define TRT_PATCH_RTX 1\n"
                           "#define NV_TENSORRT_MAJOR TRT_MAJOR_RTX\n"),
    "TensorRT ": "#define NV_TENSORRT_MAJOR 10\n",  # incomplete: no version, so the plugin is skipped with the reason
}


@pytest.mark.parametrize("expected", sorted(VERSION_HEADERS))
def test_cmake_reads_every_style_of_tensorrt_version_header(expected: str, tmp_path: Path) -> None:
    cmake, _ = tools()
    (tmp_path / "NvInferVersion.h").write_text(VERSION_HEADERS[expected])
    script = tmp_path / "read.cmake"
    script.write_text(f'include("{VERSION_MODULE}")\ndetrt_tensorrt_version("{tmp_path}" version flavour)\n'
                      'message("${flavour} ${version}")\n')
    assert run([cmake, "-P", str(script)], timeout=60).strip() == expected.strip()


@pytest.mark.slow
def test_tensorrt_rtx_style_headers_are_recognised_not_skipped(tmp_path: Path) -> None:
    """RTX's own headers are not public: the 11.1 headers with RTX's version macros stand in for them, to
    show that CMake takes major 1 of TensorRT-RTX as new enough instead of skipping the plugin."""
    source = next((Path(folder) for folder in include_dirs() if Path(folder, "NvInferVersion.h").is_file()), None)
    if source is None:
        pytest.skip(f"{ENV_VARS[0]} names no TensorRT header folder to stand in for RTX's")
    cmake, _ = tools()
    headers = tmp_path / "include"
    headers.mkdir()
    for header in source.iterdir():
        (headers / header.name).symlink_to(header)
    (headers / "NvInferVersion.h").unlink()
    (headers / "NvInferVersion.h").write_text(VERSION_HEADERS["TensorRT-RTX 1.7.1"])
    assert f"{BUILT}TensorRT-RTX 1.7.1 headers in {headers})" in configure(cmake, headers, tmp_path / "build")
