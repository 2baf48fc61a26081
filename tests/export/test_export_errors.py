"""Export refuses what it cannot do, at export time, with a message that says what to change."""
from __future__ import annotations

import json

import pytest
import torch

from detrt.detectors import Detector, DetectorConfig, PreprocessSpec, build_model
from detrt.export import ExportError, ExportOptions, check_exportable, export_onnx
from detrt.export.msda_nodes import MAX_SAMPLES_PER_HEAD, check_msda_supported
from detrt.runtime.cli import main
from support.variants import small_config, small_model


def fixed(name: str) -> Detector:
    return Detector(small_model(name), small_config(name), PreprocessSpec(fixed_size=(128, 128)))


def test_cli_exports_the_shipped_model_and_prints_a_json_report(tmp_path, capsys):
    path = tmp_path / "model.onnx"
    assert main(["export", "--zoo", "shapes-deformable-detr", "-o", str(path), "--msda", "portable", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)  # progress goes to stderr, so stdout is pure JSON
    assert report["onnx"] == str(path) and report["ops"]["GridSample"] == 18  # 6 MSDA calls x 3 levels
    assert report["inputs"] == {"images": [1, 3, 256, 256]}


@pytest.mark.parametrize("argv, message", [
    (["--zoo", "no-such-model"], "unknown zoo model 'no-such-model'; available: ['shapes-deformable-detr']"),
    (["--zoo", "shapes-deformable-detr", "--msda", "portable", "--opset", "15"],
     "opset 15 cannot express MSDA mode 'portable': use opset 16"),
    (["--zoo", "shapes-deformable-detr", "--batch", "0"], "--batch must be a positive number or 'dynamic'"),
    (["--zoo", "shapes-deformable-detr", "--size", "256"], "--size must look like HxW"),
])
def test_cli_errors_are_one_clear_line(argv, message, tmp_path, capsys):
    path = tmp_path / "model.onnx"
    assert main(["export", *argv, "-o", str(path)]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("detrt export: error: ") and message in error
    assert not path.exists()


def test_unknown_architecture_is_named(tmp_path, capsys):
    checkpoint = tmp_path / "model.pth"
    torch.save({"model": small_model("deformable_detr").state_dict()}, checkpoint)
    assert main(["export", str(checkpoint), "--arch", "yolo", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "invalid choice: 'yolo'" in capsys.readouterr().err


def test_model_in_training_mode_is_refused():
    detector = fixed("deformable_detr")
    detector.model.train()
    with pytest.raises(ExportError, match=r"training mode .* call model.eval\(\)"):
        check_exportable(detector, ExportOptions())


def test_msda_configuration_beyond_the_plugin_is_refused_for_plugin_mode_only():
    points = MAX_SAMPLES_PER_HEAD // 4 + 1
    config = DetectorConfig.for_arch("deformable_detr", hidden_dim=32, nheads=2, enc_layers=1, dec_layers=1,
                                     dim_feedforward=32, num_queries=4, num_classes=2, backbone="resnet18",
                                     backbone_width=16, enc_n_points=points, dec_n_points=points)
    detector = Detector(build_model(config), config, PreprocessSpec(fixed_size=(128, 128)))
    with pytest.raises(ExportError, match=rf"at most {MAX_SAMPLES_PER_HEAD} samples per head .* 4 x {points}"):
        check_exportable(detector, ExportOptions(msda="plugin"))
    check_exportable(detector, ExportOptions(msda="portable"))  # GridSample has no such limit


@pytest.mark.parametrize("mode, points, method, message", [
    ("nvidia", [3, 6, 3], "bilinear", r"built-in MSDA plugin samples bilinearly with one point count .* --msda plugin"),
    ("nvidia", [4, 4, 4], "discrete", r"samples \[4, 4, 4\] points per level, discrete"),
    ("plugin", [MAX_SAMPLES_PER_HEAD, 1], "bilinear", rf"at most {MAX_SAMPLES_PER_HEAD} samples per head .* "
                                                      rf"{MAX_SAMPLES_PER_HEAD} \+ 1 = {MAX_SAMPLES_PER_HEAD + 1}"),
    ("plugin", [1] * 17, "discrete", "at most 16 feature levels, the model has 17"),
])
def test_sampling_beyond_a_plugin_is_refused(mode, points, method, message):
    """Point counts per level and the discrete method are detrt's plugin only; its limits hold for T."""
    with pytest.raises(ValueError, match=message):
        check_msda_supported(mode, points, method)
    check_msda_supported("portable", points, method)
    if mode == "nvidia":
        check_msda_supported("plugin", points, method)


def test_deformable_convolution_needs_opset_19():
    with pytest.raises(ExportError, match="deformable convolutions .* pass --opset 19"):
        check_exportable(fixed("deformable_detr-dc5-dcn-r50"), ExportOptions(opset=17))


def test_a_model_without_a_fixed_size_needs_size():
    detector = Detector(small_model("detr"), small_config("detr"))  # shortest edge 800 / longest 1333
    with pytest.raises(ExportError, match="pass --size HxW"):
        check_exportable(detector, ExportOptions())
    assert check_exportable(detector, ExportOptions(size=(96, 128))) == ("none", (96, 128))


def test_failed_export_leaves_the_previous_file_untouched(tmp_path):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"previous")
    detector = fixed("deformable_detr")
    detector.model.train()
    with pytest.raises(ExportError):
        export_onnx(detector, path)
    assert path.read_bytes() == b"previous" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_save_atomic_cleans_up_when_the_final_rename_fails(tmp_path):
    import onnx

    from detrt.export.onnx_passes import save_atomic

    target = tmp_path / "model.onnx"
    target.mkdir()  # a folder where the file should go: the rename fails after the bytes were written
    model = onnx.helper.make_model(onnx.helper.make_graph([], "empty", [], []))
    with pytest.raises(OSError):
        save_atomic(model, target)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"] and not any(target.iterdir())
