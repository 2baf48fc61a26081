"""TensorRT engines: build, sidecar checks, plugin lookup, run and CUDA graphs.

The sidecar, plugin-lookup, profile and "not installed" paths run everywhere; building and running
engines is marked `tensorrt` (and `gpu`) and skipped where TensorRT cannot be imported.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from detrt import runtime
from detrt.runtime.accuracy.agreement import compare_detections
from detrt.runtime.cli import main
from detrt.runtime.backends.tensorrt.build import BatchProfile, BuildOptions, build_engine, input_profile
from detrt.runtime.errors import BackendUnavailableError, EngineBuildError, EngineMismatchError, PluginLibraryError
from detrt.runtime.backends.tensorrt.sidecar import check_sidecar, read_sidecar, sidecar_path, write_sidecar
from detrt.runtime.backends.tensorrt.plugins import ENV_VAR, LIBRARY_FILE, candidate_paths, find_plugin_library
from support.shipped import images, shipped_onnx

BUILT = {"tensorrt_version": "10.3.0", "gpu": "NVIDIA A100-SXM4-40GB", "compute_capability": "8.0",
         "onnx": {"path": "model.onnx"}, "metadata_props": {}}


def test_sidecar_mismatch_names_each_difference_and_the_rebuild_command(tmp_path: Path) -> None:
    here = {"tensorrt_flavour": "tensorrt", "tensorrt_version": "11.4.1", "gpu": "NVIDIA GeForce RTX 4090",
            "compute_capability": "8.9"}
    with pytest.raises(EngineMismatchError) as caught:
        check_sidecar(BUILT, here, tmp_path / "model.engine")
    message = str(caught.value)
    assert "TensorRT '10.3.0' (built) vs '11.4.1' (here)" in message
    assert "GPU 'NVIDIA A100-SXM4-40GB' (built) vs 'NVIDIA GeForce RTX 4090' (here)" in message
    assert "compute capability '8.0' (built) vs '8.9' (here)" in message
    assert f"detrt build model.onnx -o {tmp_path / 'model.engine'}" in message
    same = {"tensorrt_flavour": "tensorrt", **{key: BUILT[key] for key in here if key in BUILT}}
    check_sidecar(BUILT, same, "model.engine")  # the same machine (a sidecar without a flavour: TensorRT's): accepted


def test_sidecar_round_trip_and_missing_or_foreign_sidecars(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    with pytest.raises(EngineMismatchError, match="has no sidecar model.engine.json"):
        read_sidecar(engine)
    write_sidecar(engine, BUILT)
    assert sidecar_path(engine).name == "model.engine.json"
    assert read_sidecar(engine)["gpu"] == BUILT["gpu"]
    sidecar_path(engine).write_text(json.dumps({"format": 99, "gpu": "x"}))
    with pytest.raises(EngineMismatchError, match="not one this detrt writes"):
        read_sidecar(engine)
    sidecar_path(engine).write_text("{ not json")
    with pytest.raises(EngineMismatchError, match="unreadable"):
        read_sidecar(engine)


def test_opening_an_engine_checks_its_sidecar_before_tensorrt(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"serialized engine")
    with pytest.raises(EngineMismatchError, match="no sidecar"):
        runtime.open(engine)
    if importlib.util.find_spec("tensorrt") is None:
        write_sidecar(engine, BUILT)
        with pytest.raises(BackendUnavailableError, match="TensorRT \\(tensorrt\\) is not installed"):
            runtime.open(engine)


def test_missing_plugin_library_names_every_path_tried(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    explicit = tmp_path / "libmissing.so"
    with pytest.raises(PluginLibraryError, match="tried:\n  " + str(explicit)):
        find_plugin_library(str(explicit))
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "from-env.so"))
    assert candidate_paths() == [tmp_path / "from-env.so"]
    monkeypatch.delenv(ENV_VAR)
    defaults = candidate_paths()
    assert all(path.name == LIBRARY_FILE for path in defaults)
    assert any(path.parent.name == "plugins" and path.parent.parent.name == "detrt" for path in defaults)
    if not any(path.is_file() for path in defaults):
        with pytest.raises(PluginLibraryError) as caught:
            find_plugin_library()
        assert all(str(path) in str(caught.value) for path in defaults)
        assert "--plugin-lib" in str(caught.value) and "--msda portable" in str(caught.value)


def test_batch_profiles() -> None:
    assert BatchProfile.parse("1:4:8") == BatchProfile(1, 4, 8)
    assert BatchProfile.parse("2") == BatchProfile(2, 2, 2)
    for bad in ("0:1:2", "4:2:8", "1:2", "a"):
        with pytest.raises(ValueError, match="--batch"):
            BatchProfile.parse(bad)
    assert input_profile((-1, 3, 256, 256), BatchProfile(1, 2, 4)) == ((1, 3, 256, 256), (2, 3, 256, 256),
                                                                      (4, 3, 256, 256))
    assert input_profile((-1, 3, 64, 64), None)[2] == (1, 3, 64, 64)
    assert input_profile((2, 3, 64, 64), None) == ((2, 3, 64, 64),) * 3
    with pytest.raises(EngineBuildError, match="--batch dynamic"):
        input_profile((1, 3, 64, 64), BatchProfile(1, 2, 4))


def test_build_without_tensorrt_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    code = main(["build", str(shipped_onnx("portable")), "-o", str(tmp_path / "model.engine"), "--flavour", "tensorrt"])
    err = capsys.readouterr().err
    assert code == 2 and "TensorRT (tensorrt) is not installed" in err and "[trt]" in err
    assert not (tmp_path / "model.engine").exists()


def test_cuda_without_a_gpu_is_a_clear_error() -> None:
    if importlib.util.find_spec("cuda") is None or torch.cuda.is_available():
        pytest.skip("needs cuda-python and no usable GPU")
    from detrt.runtime.backends.tensorrt.cuda_device import open_device

    with pytest.raises(BackendUnavailableError, match="TensorRT engines need an NVIDIA GPU"):
        open_device(0)


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_matches_onnx_runtime_across_batches_and_with_a_cuda_graph(tmp_path: Path) -> None:
    engine = tmp_path / "portable.engine"
    cache = tmp_path / "timing.cache"
    sidecar = build_engine(shipped_onnx("portable"), engine, BuildOptions(batch=BatchProfile(1, 2, 4), timing_cache=cache))
    assert engine.is_file() and cache.is_file() and sidecar["input_shapes"]["images"][2] == [4, 3, 256, 256]
    assert read_sidecar(engine)["onnx"]["sha256"] == sidecar["onnx"]["sha256"]
    pictures = images(3)
    expected = runtime.open(shipped_onnx("portable")).detect(pictures)
    for cuda_graph in (False, True):
        model = runtime.open(engine, device="cuda", cuda_graph=cuda_graph)
        assert (model.backend.batch.min, model.backend.batch.max) == (1, 4)
        for _ in range(2):  # the second call replays the captured graph
            found = model.detect(pictures)
        agreement = compare_detections(expected, found, conf=0.3)  # TF32 may be on: not bit-exact
        assert agreement["agree"] and agreement["matched"] > 0, agreement
        assert agreement["max_score_diff"] < 0.02 and agreement["max_box_diff_px"] < 2.0, agreement


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_from_another_tensorrt_is_refused(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    build_engine(shipped_onnx("portable", 1), engine)
    sidecar = json.loads(sidecar_path(engine).read_text())
    sidecar["tensorrt_version"] = "9.0.0"
    sidecar_path(engine).write_text(json.dumps(sidecar))
    with pytest.raises(EngineMismatchError, match="TensorRT '9.0.0' \\(built\\)"):
        runtime.open(engine, device="cuda")


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_plugin_graph_with_a_missing_plugin_library(tmp_path: Path) -> None:
    with pytest.raises(PluginLibraryError, match=str(tmp_path / "nowhere.so")):
        build_engine(shipped_onnx("plugin", 1), tmp_path / "model.engine",
                     BuildOptions(plugin_lib=str(tmp_path / "nowhere.so")))
