"""The shipped model's exported graphs through `detrt.runtime`, against the PyTorch reference."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from detrt import runtime
from detrt.runtime.accuracy.agreement import compare_detections
from support.shipped import ZOO, images, shipped, shipped_onnx

def test_portable_graph_matches_pytorch_in_original_pixels() -> None:
    pictures = images(3)
    found = runtime.open(shipped_onnx("portable")).detect(pictures)
    expected = shipped()(pictures)  # the Detector's own pre- and post-processing
    assert [tuple(p.shape[:2]) for p in pictures] != [(256, 256)] * 3  # boxes must be scaled back
    for got, want in zip(found, expected):
        assert len(got) == len(want) == 40
        torch.testing.assert_close(got.scores, want.scores, atol=1e-4, rtol=0)
        assert torch.equal(got.labels, want.labels)
        torch.testing.assert_close(got.boxes, want.boxes, atol=0.05, rtol=0)
    assert compare_detections(expected, found, conf=0.5)["agree"]


def test_plugin_graph_runs_in_onnx_runtime_and_fixed_batches_are_padded_and_split() -> None:
    model = runtime.open(shipped_onnx("plugin", 2))
    assert (model.backend.batch.min, model.backend.batch.max) == (2, 2)
    pictures = images(3)  # one call of 2, one call of 1 padded to 2
    found = model.detect(pictures, conf=0.5)
    one_by_one = [model.detect([picture], conf=0.5)[0] for picture in pictures]
    reference = runtime.open(shipped()).detect(pictures, conf=0.5)
    assert len(found) == 3 and sum(map(len, found)) > 0
    for got, alone in zip(found, one_by_one):
        torch.testing.assert_close(got.scores, alone.scores)
    agreement = compare_detections(reference, found, conf=0.5)
    assert agreement["agree"] and agreement["max_score_diff"] < 1e-3, agreement


def test_dynamic_batch_gives_the_same_detections_as_single_images() -> None:
    model = runtime.open(shipped_onnx("portable"), threads=2)
    pictures = images(4, seed=12)
    batched = model.detect(pictures, conf=0.3)
    for picture, got in zip(pictures, batched):
        alone = model.detect(picture, conf=0.3)[0]
        assert torch.equal(got.labels, alone.labels)
        torch.testing.assert_close(got.boxes, alone.boxes, atol=1e-3, rtol=0)


def test_open_picks_the_backend_from_the_source(tmp_path: Path) -> None:
    assert runtime.open(shipped_onnx("portable")).backend.name == "onnxruntime"
    assert runtime.open(ZOO).backend.name == "pytorch"
    with pytest.raises(ValueError, match="cannot tell how to run"):
        runtime.open(tmp_path / "model.xyz")
    with pytest.raises(FileNotFoundError, match="detrt export"):
        runtime.open(tmp_path / "absent.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"\x08garbage")
    with pytest.raises(ValueError, match="not a readable ONNX"):
        runtime.open(tmp_path / "broken.onnx")


def test_foreign_onnx_is_refused_with_the_fix(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="detrt export"):
        runtime.open(tmp_path / "foreign.onnx")


def test_cuda_provider_missing_is_a_clear_error() -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this ONNX Runtime has the CUDA provider")
    from detrt.runtime.errors import BackendUnavailableError

    with pytest.raises(BackendUnavailableError, match="onnxruntime-gpu"):
        runtime.open(shipped_onnx("portable"), device="cuda")
