"""NVIDIA's real TensorRT-RTX builder parses and builds detrt's graphs ahead of time, on the CPU.

Marked `rtx`: runs wherever `import tensorrt_rtx` works (the CI installs the `rtx` extra), no GPU
needed. Running the engines needs an RTX-class GPU, which no machine of this project has had: these
tests prove the parse and build path, the plugin layers TensorRT sees, the sidecars and the refusals.
Plugin graphs need libdetrt_trt_plugins (built when the install finds TensorRT headers).
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import onnx
import pytest

from detrt.calibrate.fp16 import convert_fp16
from detrt.calibrate.pipeline import CalibrationSettings, calibrate_model
from detrt.calibrate.calibration_images import list_images
from detrt.export import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, ExportOptions, export_onnx
from detrt.runtime import open as open_model
from detrt.runtime.cli import main
from detrt.runtime.backends.tensorrt.build import BatchProfile, BuildOptions, build_engine
from detrt.runtime.errors import BackendUnavailableError, EngineBuildError, EngineMismatchError
from detrt.runtime.backends.tensorrt.sidecar import check_sidecar, read_sidecar, sidecar_path
from detrt.runtime.backends.tensorrt.flavour import RTX, TENSORRT, import_tensorrt, rtx_library_folder
from detrt.runtime.backends.tensorrt.plugins import find_plugin_library, load_plugins
from support.shipped import shapes_dataset, shipped_onnx
from support.variants import VARIANTS, exported_variant

pytestmark = pytest.mark.rtx

PLUGINS = {DETRT_PLUGIN.name, DETRT_FUSED_PLUGIN.name}


@pytest.fixture(scope="module")
def rtx():  # noqa: ANN201 (TensorRT)
    tensorrt = import_tensorrt(RTX)
    find_plugin_library()  # plugin graphs below need it: a missing library fails here, with the paths tried
    return tensorrt


def parsed_network(rtx, path: Path):  # noqa: ANN001, ANN201 (TensorRT objects)
    """The strongly typed network TensorRT-RTX's ONNX parser makes of `path` (and the objects it lives in)."""
    trt = rtx.module
    logger = trt.Logger(trt.Logger.ERROR)
    load_plugins(trt, logger, "plugin")
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    assert parser.parse_from_file(str(path)), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    return builder, network, parser


def msda_nodes(path: Path) -> list[onnx.NodeProto]:
    return [node for node in onnx.load(str(path), load_external_data=False).graph.node if node.op_type in PLUGINS]


def assert_one_plugin_layer_per_msda_node(rtx, path: Path, batch: int, dtype: str) -> None:
    """Exactly one IPluginV3 layer per MSDA node; output (N, Lq, M*D) of the graph's float type."""
    trt = rtx.module
    _, network, _ = parsed_network(rtx, path)
    layers = [network.get_layer(i) for i in range(network.num_layers)]
    plugins = [layer for layer in layers if layer.type == trt.LayerType.PLUGIN_V3]
    nodes = msda_nodes(path)
    assert len(plugins) == len(nodes) > 0, (len(plugins), len(nodes))
    for layer in plugins:
        output = layer.get_output(0)
        shape = tuple(output.shape)
        assert len(shape) == 3 and shape[0] == batch and shape[2] > 0, shape
        assert output.dtype == getattr(trt.DataType, dtype), (layer.name, output.dtype)
        assert layer.get_input(0).dtype == getattr(trt.DataType, dtype)  # value
        index_inputs = [layer.get_input(i) for i in (1, 2)]  # spatial_shapes, level_start_index
        assert all(tensor.dtype == trt.DataType.INT32 for tensor in index_inputs)


def build(path: Path, engine: Path, **options) -> dict:  # noqa: ANN003
    sidecar = build_engine(path, engine, BuildOptions(flavour=RTX, **options))
    assert engine.stat().st_size > 100_000 and read_sidecar(engine) == json.loads(sidecar_path(engine).read_text())
    assert sidecar["tensorrt_flavour"] == RTX and sidecar["gpu"] is None
    return sidecar


# The exports test_export.py checks against PyTorch (plugin and fused at batch 2, portable dynamic), plus a
# dynamic-batch plugin graph; dynamic graphs build with a 1:2:3 profile.
GRAPHS = [("plugin", False, 2), ("plugin", True, 2), ("plugin", False, None), ("portable", False, None)]


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_parses_and_builds(rtx, name: str, tmp_path: Path) -> None:
    deformable = VARIANTS[name]["arch"] == "deformable_detr"
    dcn = "deformable_stages" in VARIANTS[name]
    if dcn:  # DCNv2 needs a deformable-convolution plugin (NVIDIA's, or DeformConv's fallback): RTX has none
        for path in (exported_variant(name, "plugin"), exported_variant(name, "portable", batch=None)):
            engine = tmp_path / path.with_suffix(".engine").name
            with pytest.raises(EngineBuildError, match="deformable-convolution backbone.*TensorRT-RTX"):
                build(path, engine)
            assert not engine.exists()
        return
    for mode, fused, batch in GRAPHS if deformable else [("portable", False, None)]:
        path = exported_variant(name, mode, fused, batch)
        engine = tmp_path / path.with_suffix(".engine").name
        sidecar = build(path, engine, batch=None if batch else BatchProfile(1, 2, 3))
        assert [shape[0] for shape in sidecar["input_shapes"]["images"]] == ([2] * 3 if batch else [1, 2, 3])
        if mode == "plugin":
            assert_one_plugin_layer_per_msda_node(rtx, path, batch or -1, "FLOAT")


@pytest.mark.slow
# One family per way its sampling reaches detrt's op: module replaced (RT-DETR; RF-DETR with its
# position table), function dispatched (RT-DETRv2, here with the "discrete" method), per-module function
# replaced (D-FINE, here with points per level [3, 6, 3]: the points_per_level attribute). LW-DETR and
# DEIMv2 take the RT-DETR and D-FINE routes.
@pytest.mark.parametrize("family", ["rt_detr", "rt_detr_v2-discrete", "d_fine-points-3-6-3", "rf_detr"])
def test_hf_family_plugin_graph_builds(rtx, family: str, tmp_path: Path) -> None:
    """The HF families with MSDA (transformers' modules with detrt's MSDA): one plugin layer per decoder
    layer, and an engine."""
    from detrt.detectors import from_hf
    from support.hf_models import tiny_d_fine, tiny_rf_detr, tiny_rt_detr, tiny_rt_detr_v2

    path = tmp_path / f"{family}.onnx"
    model = {"rt_detr": tiny_rt_detr, "rt_detr_v2-discrete": lambda: tiny_rt_detr_v2(method="discrete"),
             "d_fine-points-3-6-3": lambda: tiny_d_fine(points=[3, 6, 3]), "rf_detr": tiny_rf_detr}[family]()
    size = (224, 336) if family == "rf_detr" else (192, 256)  # RF-DETR: multiples of its 28-px window grid
    export_onnx(from_hf(model), path, ExportOptions(msda="plugin", batch=1, size=size))
    assert_one_plugin_layer_per_msda_node(rtx, path, 1, "FLOAT")
    assert build(path, path.with_suffix(".engine"))["precision"] == "fp32"


@pytest.mark.slow
def test_patched_foreign_export_builds(rtx, tmp_path: Path) -> None:
    """`detrt patch --fused` of a plain torch.onnx export (transformers' RT-DETR): fused plugin layers, and an
    engine from TensorRT-RTX's builder."""
    import torch

    from detrt.export import patch_onnx
    from support.hf_models import LogitsAndBoxes, tiny_rt_detr

    source, patched = tmp_path / "foreign.onnx", tmp_path / "patched.onnx"
    torch.onnx.export(LogitsAndBoxes(tiny_rt_detr()).eval(), (torch.rand(1, 3, 192, 256),), str(source),
                      opset_version=17, dynamo=False)
    patch_onnx(source, patched, fused=True)
    assert {node.op_type for node in msda_nodes(patched)} == {DETRT_FUSED_PLUGIN.name}
    assert_one_plugin_layer_per_msda_node(rtx, patched, 1, "FLOAT")
    builder, network, _ = parsed_network(rtx, patched)  # no detrt metadata: TensorRT's builder, not `detrt build`
    engine = builder.build_serialized_network(network, builder.create_builder_config())
    assert engine is not None and engine.nbytes > 100_000


def test_fp16_and_int8_graphs_of_the_shipped_model_build(rtx, tmp_path: Path) -> None:
    source = shipped_onnx("plugin")
    fp16 = tmp_path / "model.fp16.onnx"
    convert_fp16(source, fp16)
    assert_one_plugin_layer_per_msda_node(rtx, fp16, -1, "HALF")
    _, network, _ = parsed_network(rtx, fp16)  # mixed precision: float16 value, float32 locations and weights
    plugins = [network.get_layer(i) for i in range(network.num_layers)
               if network.get_layer(i).type == rtx.module.LayerType.PLUGIN_V3]
    assert all(layer.get_input(i).dtype == rtx.module.DataType.FLOAT for layer in plugins for i in (3, 4))
    int8, mixed = tmp_path / "model.int8.onnx", tmp_path / "model.int8-fp16.onnx"
    settings = CalibrationSettings(batch_size=4, cache=tmp_path / "calib.json")
    images = list_images(coco=shapes_dataset())
    calibrate_model(source, int8, images, settings)
    calibrate_model(source, mixed, images, CalibrationSettings(batch_size=4, cache=tmp_path / "calib.json",
                                                               float_layers="fp16"))
    for path, precision in ((source, "fp32"), (fp16, "fp16"), (int8, "int8"), (mixed, "int8")):
        sidecar = build(path, path.with_suffix(".engine"), batch=BatchProfile(1, 1, 2))
        assert sidecar["precision"] == precision


def test_shipped_model_from_the_command_line_with_targets(rtx, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    onnx_path = tmp_path / "m.onnx"
    assert main(["export", "--zoo", "shapes-deformable-detr", "-o", str(onnx_path)]) == 0
    engine = tmp_path / "m.engine"
    capsys.readouterr()
    assert main(["build", str(onnx_path), "-o", str(engine), "--compute-capability", "8.6,8.9", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["tensorrt_flavour"] == RTX and report["compute_capabilities"] == ["8.6", "8.9"]
    sidecar = read_sidecar(engine)
    assert sidecar["portable_default"] is False and sidecar["plugins"] and sidecar["metadata_props"]
    # The sidecar check: an RTX engine runs under RTX on one of its targets, nowhere else.
    here = {"tensorrt_flavour": RTX, "tensorrt_version": sidecar["tensorrt_version"],
            "gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}
    check_sidecar(sidecar, here, engine)
    for changed, message in (({"compute_capability": "12.0"}, "'12.0' \\(here\\) is not among the engine's targets"),
                             ({"tensorrt_flavour": TENSORRT}, "flavour 'tensorrt-rtx' \\(built\\) vs 'tensorrt'"),
                             ({"tensorrt_version": "1.8.0"}, "TensorRT '1.7")):
        with pytest.raises(EngineMismatchError, match=message):
            check_sidecar(sidecar, {**here, **changed}, engine)
    # Without an RTX GPU, opening the engine is one clear line (no crash, no traceback).
    with pytest.raises(BackendUnavailableError, match="RTX-class NVIDIA GPUs|cuda-python or pycuda"):
        open_model(engine, device="cuda")
    assert main(["run", str(engine), "--source", str(tmp_path), "--device", "cuda"]) == 2


def test_refusals_are_clear_and_write_nothing(rtx, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    nvidia = shipped_onnx("nvidia")
    engine = tmp_path / "nv.engine"
    assert main(["build", str(nvidia), "-o", str(engine), "--flavour", "rtx"]) == 2
    err = capsys.readouterr().err
    assert "MultiscaleDeformableAttnPlugin_TRT" in err and "--msda plugin" in err and "--msda portable" in err
    portable = shipped_onnx("portable")
    for flags, message in ((["--compute-capability", "9.0"], "TensorRT-RTX builds for 7.5, 8.0"),
                           (["--dla", "0"], "TensorRT-RTX has no DLA"),
                           (["--compute-capability", "8.6", "--flavour", "tensorrt"],
                            "TensorRT \\(tensorrt\\) is not installed|applies to TensorRT-RTX only")):
        assert main(["build", str(portable), "-o", str(engine), *flags]) == 2
        assert re.search(message, capsys.readouterr().err)
    assert not engine.exists() and not sidecar_path(engine).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_wheel_library_link_is_repaired(rtx) -> None:
    folder = rtx_library_folder(rtx)
    link = folder / "libtensorrt_rtx.so"
    assert link.exists() and link.resolve() == (folder / "libtensorrt_rtx.so.1").resolve()


def test_malformed_plugin_fields_through_the_real_registry_are_refused(rtx) -> None:
    trt = rtx.module
    load_plugins(trt, trt.Logger(trt.Logger.ERROR), "plugin")
    registry = trt.get_plugin_registry()
    for plugin in (DETRT_PLUGIN, DETRT_FUSED_PLUGIN):
        creator = registry.get_creator(plugin.name, plugin.version, plugin.namespace)
        assert creator is not None, plugin.name

        def create(*fields):  # noqa: ANN002, ANN202
            collection = trt.PluginFieldCollection(list(fields))
            return creator.create_plugin("msda", collection, trt.TensorRTPhase.BUILD)

        def shapes(values, kind=trt.PluginFieldType.INT32, dtype=np.int32):  # noqa: ANN001, ANN202
            return trt.PluginField("spatial_shapes", np.asarray(values, dtype=dtype), kind)

        assert create(shapes([12, 16, 6, 8])) is not None  # a valid table: the creator works
        bad = [shapes([12, 16, 6]),                                  # odd length: not (H, W) pairs
               shapes([]),                                           # no level
               shapes([12, -16]),                                    # negative width
               shapes([0, 16]),                                      # zero height
               shapes([70000, 70000]),                               # H*W beyond int32
               shapes([4, 4] * 17),                                  # more levels than the kernels take
               shapes([12.0, 16.0], trt.PluginFieldType.FLOAT32, np.float32),  # wrong type
               trt.PluginField("unknown_field", np.asarray([1], np.int32), trt.PluginFieldType.INT32)]
        for field in bad:
            assert create(field) is None, field.name
        assert create(shapes([12, 16]), shapes([12, 16])) is None  # given twice
