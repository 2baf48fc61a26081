"""FP16 conversion and INT8 calibration of the shipped model's export, run in ONNX Runtime.

Tolerances: FP16 and INT8 are compared with the FP32 graph on a few generated images through the
detection outputs. Scores come sorted (top-k), so their difference is order-free: FP16 keeps ~3
significant digits per tensor (measured max ~2e-2 on 500 images), INT8 steps of range/127 per layer
(measured 99th percentile ~5e-2). Confident detections must pair (same label, IoU >= 0.9) with the
FP32 graph's: the acceptance measure of the precision work.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from torchvision.ops import box_iou

from detrt.calibrate.calibration_images import CalibrationDataError, ImageBatches, list_images, prepare
from detrt.calibrate.fp16 import KeepList, convert_fp16
from detrt.calibrate.int8 import CalibrationCacheError, quantizable_nodes
from detrt.calibrate.model_files import PrecisionError
from detrt.calibrate.pipeline import CalibrationSettings, calibrate_model
from detrt.detectors.data.images import ImageReadError, read_image
from detrt.export import DETRT_PLUGIN, read_metadata
from detrt.export.onnx_passes import save_atomic
from detrt.runtime.cli import main
from detrt.runtime.model import Model, open_model
from detrt.export.ort_plugins import create_session
from detrt.runtime.backends.torch_backend import TorchBackend
from support.shipped import shapes_dataset, shipped, shipped_onnx


def images_of(coco) -> list:
    return list_images(coco=coco)


def graph_outputs(path, batch: np.ndarray) -> dict[str, np.ndarray]:
    session = create_session(str(path))
    return dict(zip(("scores", "labels", "boxes"), session.run(["scores", "labels", "boxes"], {"images": batch})))


def pairs_all_confident(reference: dict, candidate: dict, conf: float = 0.5) -> bool:
    """Every confident detection of each side has a same-label partner with IoU >= 0.9 on the other."""
    for a, b in ((reference, candidate), (candidate, reference)):
        for i in range(len(a["scores"])):
            keep = a["scores"][i] >= conf
            if not keep.any():
                continue
            iou = box_iou(torch.from_numpy(a["boxes"][i][keep]), torch.from_numpy(b["boxes"][i]))
            iou[torch.from_numpy(a["labels"][i][keep])[:, None] != torch.from_numpy(b["labels"][i])[None, :]] = 0
            if not bool((iou.max(dim=1).values >= 0.9).all()):
                return False
    return True


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    coco = shapes_dataset()
    return prepare([read_image(p) for p in images_of(coco)], read_metadata(shipped_onnx()))


# ---------------------------------------------------------------- pre-processing and images


def test_preprocessing_is_the_runtimes(tmp_path):
    path = images_of(shapes_dataset())[0]
    image = read_image(path)
    model = Model(TorchBackend(shipped()))
    for normalize_in_graph in (True, False):
        model.metadata = dataclasses.replace(model.metadata, normalize_in_graph=normalize_in_graph)
        ours = prepare([image], model.metadata)
        np.testing.assert_array_equal(ours, model.prepare([image]).images)  # bit for bit
    assert ours.mean() < 5  # normalised, not 0..255


def test_image_errors_name_the_problem(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationDataError, match="no images"):
        list_images(empty)
    with pytest.raises(CalibrationDataError, match="does not exist"):
        list_images(tmp_path / "missing")
    with pytest.raises(CalibrationDataError, match="--images DIR or --coco JSON"):
        list_images()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="cannot decode image .*broken.png"):
        read_image(broken)


def test_fewer_images_than_the_batch(tmp_path):
    metadata = read_metadata(shipped_onnx())
    paths = images_of(shapes_dataset())[:3]
    with pytest.raises(CalibrationDataError, match="3 image.*fewer than one batch of 8.*at least 8"):
        ImageBatches(paths, metadata, batch_size=8)
    fixed = dataclasses.replace(metadata, batch=4)
    with pytest.raises(CalibrationDataError, match="batch of 4 \\(the graph's fixed batch\\)"):
        ImageBatches(paths, fixed)
    batches = ImageBatches(images_of(shapes_dataset())[:7], fixed)  # the incomplete fixed batch is left out
    assert (batches.used, len(batches), [len(b) for b in batches]) == (4, 1, [4])
    assert [len(b) for b in ImageBatches(paths, metadata, batch_size=2)] == [2, 1]


# ---------------------------------------------------------------- FP16


@pytest.fixture(scope="module")
def fp16_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("fp16") / "model.fp16.onnx"
    report = convert_fp16(shipped_onnx(), path)
    assert report.fp16_nodes > 300 and report.kept_fp32["LayerNormalization"] == 15
    return path


def test_fp16_graph_types_and_metadata(fp16_path):
    source, model = onnx.load(str(shipped_onnx())), onnx.load(str(fp16_path))
    assert read_metadata(model) == dataclasses.replace(read_metadata(source), precision="fp16")
    float_, half = onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [float_]  # runtime contract unchanged
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [float_, onnx.TensorProto.INT64, float_]
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    types.update({t.name: t.data_type for t in model.graph.initializer})
    nodes = {n.name: n for n in model.graph.node}
    kept = {n.name for n in KeepList.default().nodes(source)}
    for name in kept & set(nodes):  # the keep list computes in float32
        assert all(types.get(o) in (float_, None) for o in nodes[name].output), name
    # The plugin's mixed kernel: float16 value and output, float32 locations computed in float32 (not a
    # Cast of a float16 tensor) and float32 weights.
    plugins = [n for n in model.graph.node if n.op_type == DETRT_PLUGIN.name]
    assert len(plugins) == 6 and all([types[x] for x in n.input] + [types[n.output[0]]] == [half] + [
        onnx.TensorProto.INT32] * 2 + [float_] * 2 + [half] for n in plugins)
    producer = {o: n for n in model.graph.node for o in n.output}
    assert all(producer[n.input[3]].op_type == "Add" for n in plugins)  # + reference points, in float32
    matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.name not in kept]
    assert len(matmuls) > 40 and all(types[n.output[0]] == half for n in matmuls)
    order = {o: i for i, n in enumerate(model.graph.node) for o in n.output}  # topologically sorted
    assert all(order.get(x, -1) < i for i, n in enumerate(model.graph.node) for x in n.input if x in order)


def test_fp16_detections_follow_fp32(fp16_path, batch):
    reference, candidate = graph_outputs(shipped_onnx(), batch), graph_outputs(fp16_path, batch)
    assert np.abs(reference["scores"] - candidate["scores"]).max() < 3e-2
    assert (reference["scores"] >= 0.5).sum() >= 12  # a real comparison, not an empty one
    assert pairs_all_confident(reference, candidate)


def test_fp16_without_sampling_preset_rounds_plugin_samples(tmp_path):
    """With LayerNorm only, the plugin nodes read float16 locations and weights (the all-float16 kernel)."""
    path = convert_fp16(shipped_onnx(), tmp_path / "plain.fp16.onnx", KeepList(("LayerNormalization",))).path
    model = onnx.load(str(path))
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    plugins = [n for n in model.graph.node if n.op_type == DETRT_PLUGIN.name]
    assert len(plugins) == 6 and all(types[n.input[3]] == types[n.input[4]] == onnx.TensorProto.FLOAT16 for n in plugins)


def test_keep_list_entries_and_second_conversion(fp16_path, tmp_path):
    keep = KeepList.parse(["Softmax", "/model/class_embed*"], defaults=False)
    assert keep == KeepList(("Softmax",), ("/model/class_embed*",))
    model = onnx.load(str(shipped_onnx()))
    names = {n.name for n in keep.nodes(model)}
    assert "/model/class_embed.2/MatMul" in names and len([n for n in names if "Softmax" in n]) == 9
    assert not any("DetrtMultiscaleDeformableAttn" in n for n in names)
    plugins = KeepList.parse(["plugins"], defaults=False)
    assert [n.op_type for n in plugins.nodes(model)] == [DETRT_PLUGIN.name] * 6
    presets = {n.name for n in KeepList.parse(["sampling", "boxes"]).nodes(model)}
    assert "/model/transformer/decoder/layers.1/cross_attn/sampling_offsets/MatMul" in presets
    assert "/model/transformer/decoder/Log_2" in presets and "/model/bbox_embed.2/layers.2/MatMul" in presets
    assert len(KeepList.default().nodes(model)) == 15 + 26  # LayerNorm and the sampling arithmetic
    assert len(presets) == 15 + 26 + 34
    with pytest.raises(PrecisionError, match="already fp16.*FP32 export"):
        convert_fp16(fp16_path, tmp_path / "twice.onnx")


# ---------------------------------------------------------------- INT8


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    folder = tmp_path_factory.mktemp("int8")
    settings = CalibrationSettings(method="entropy", batch_size=4, cache=folder / "cache.json",
                                   exclude=("/model/class_embed.2/MatMul",))
    images = images_of(shapes_dataset())
    report, analysis = calibrate_model(shipped_onnx(), folder / "model.int8.onnx", images, settings)
    assert analysis is None
    return report, settings


def test_int8_qdq_is_what_tensorrt_takes(int8):
    report, _ = int8
    model = onnx.load(str(report.path))
    assert read_metadata(model).precision == "int8"
    initializers = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(quantize) > 70 and len(dequantize) > 150
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    for node in quantize:  # only tensors a Conv/MatMul/Gemm reads are quantised (not their outputs as such)
        pairs = consumers[node.output[0]]
        assert {n.op_type for n in pairs} == {"DequantizeLinear"}, node.name
        assert {c.op_type for n in pairs for c in consumers[n.output[0]]} & {"Conv", "MatMul", "Gemm"}, node.name
    for node in quantize + dequantize:  # symmetric int8: zero point 0
        zero_point = initializers[node.input[2]]
        assert zero_point.dtype == np.int8 and not zero_point.any()
    for node in (n for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Gemm")):
        weight = producers.get(node.input[1])
        if node.name == "/model/class_embed.2/MatMul":
            assert weight is None or weight.op_type != "DequantizeLinear"  # excluded: stays float
            continue
        if weight is None or node.input[1] in initializers:
            continue
        assert weight.op_type == "DequantizeLinear", node.name
        if weight.input[0] in initializers:  # a constant weight: int8, one scale per output channel
            values, scale = initializers[weight.input[0]], initializers[weight.input[1]]
            axis = {a.name: a.i for a in weight.attribute}.get("axis", 1)
            assert values.dtype == np.int8 and scale.shape == (values.shape[axis],), node.name
            trans_b = {a.name: a.i for a in node.attribute}.get("transB", 0)
            assert axis == (0 if node.op_type == "Conv" or trans_b else 1)  # the output channel
    for node in (n for n in model.graph.node if n.op_type == DETRT_PLUGIN.name):  # plugin inputs stay float
        assert all(producers[x].op_type != "DequantizeLinear" for x in node.input if x in producers)
    assert report.excluded == ["/model/class_embed.2/MatMul"] and len(report.quantized) == 90


def test_int8_detections_follow_fp32(int8, batch):
    report, _ = int8
    reference, candidate = graph_outputs(shipped_onnx(), batch), graph_outputs(report.path, batch)
    assert np.quantile(np.abs(reference["scores"] - candidate["scores"]), 0.99) < 0.1
    assert pairs_all_confident(reference, candidate)


def test_int8_with_fp16_float_layers(int8, batch, tmp_path):
    """`float_layers="fp16"`: the same INT8 layers (the cache is reused), float16 scales (opset 19), so
    DequantizeLinear yields float16 and the float layers are FP16 except the keep list."""
    _, settings = int8
    report, _ = calibrate_model(shipped_onnx(), tmp_path / "mixed.onnx", images_of(shapes_dataset()),
                                dataclasses.replace(settings, float_layers="fp16"))
    assert report.cache_reused and report.to_dict()["float_layers"] == "fp16"
    model = onnx.load(str(report.path))
    assert read_metadata(model).precision == "int8"
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {19}
    initializers = {t.name: t for t in model.graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in model.graph.value_info}
    half, float_ = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq) > 230 and all(initializers[n.input[1]].data_type == half for n in qdq)
    assert all(types[n.output[0]] == half for n in qdq if n.op_type == "DequantizeLinear")
    layers = {n.op_type: types[n.output[0]] for n in model.graph.node if n.op_type in ("Conv", "MatMul", "Softmax",
                                                                                       "LayerNormalization")}
    assert layers == {"Conv": half, "MatMul": half, "Softmax": half, "LayerNormalization": float_}
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [float_]
    candidate = graph_outputs(report.path, batch)
    reference = graph_outputs(shipped_onnx(), batch)
    assert np.quantile(np.abs(reference["scores"] - candidate["scores"]), 0.99) < 0.1  # as INT8 alone
    assert pairs_all_confident(reference, candidate)


def test_fp16_float_layers_refuse_scales_float16_cannot_hold(tmp_path):
    model = onnx.load(str(shipped_onnx()))
    weight = next(n.input[1] for n in model.graph.node if n.name == "/model/class_embed.2/MatMul")
    target = next(t for t in model.graph.initializer if t.name == weight)
    target.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(target) * 1e-6, target.name))  # scales ~1e-9
    tiny = save_atomic(model, tmp_path / "tiny.onnx")
    images, settings = images_of(shapes_dataset()), CalibrationSettings(batch_size=4, float_layers="fp16")
    with pytest.raises(ValueError, match="1 layer\\(s\\) have INT8 scales below float16's smallest normal value "
                                         "6.1e-05 \\(/model/class_embed.2/MatMul\\); keep them out of INT8 with --exclude"):
        calibrate_model(tiny, tmp_path / "x.onnx", images, settings)
    assert not (tmp_path / "x.onnx").exists()
    excluded = dataclasses.replace(settings, exclude=("/model/class_embed.2/MatMul",))
    assert calibrate_model(tiny, tmp_path / "x.onnx", images, excluded)[0].path.is_file()


def test_calibration_cache_is_reused_and_checked(int8, tmp_path):
    report, settings = int8
    cache = json.loads(settings.cache.read_text())
    assert cache["detrt"]["images"] == 8 and cache["detrt"]["method"] == "entropy"
    assert len(cache["data"]) > 100  # ranges of the Conv/MatMul/Gemm inputs and outputs
    again, _ = calibrate_model(shipped_onnx(), tmp_path / "again.onnx", images_of(shapes_dataset())[:4], settings)
    assert again.cache_reused and again.images == 8
    first, second = onnx.load(str(report.path)), onnx.load(str(again.path))

    def scales(model: onnx.ModelProto) -> list:
        return [numpy_helper.to_array(t).tolist() for t in model.graph.initializer if t.name.endswith("_scale")]

    assert scales(first) == scales(second)
    with pytest.raises(CalibrationCacheError, match="another model or setting \\(different: method\\); delete it"):
        calibrate_model(shipped_onnx(), tmp_path / "other.onnx", images_of(shapes_dataset()),
                        dataclasses.replace(settings, method="minmax"))


def test_bad_calibration_requests(tmp_path):
    images = images_of(shapes_dataset())
    with pytest.raises(ValueError, match="match no Conv/MatMul/Gemm node"):
        calibrate_model(shipped_onnx(), tmp_path / "x.onnx", images, CalibrationSettings(exclude=("/no/such/node",)))
    with pytest.raises(ValueError, match="--sensitivity needs COCO annotations"):
        calibrate_model(shipped_onnx(), tmp_path / "x.onnx", images, CalibrationSettings(sensitivity=True))
    with pytest.raises(CalibrationDataError, match="fewer than one batch"):
        calibrate_model(shipped_onnx(), tmp_path / "x.onnx", images[:2], CalibrationSettings(batch_size=4))
    assert not (tmp_path / "x.onnx").exists()


def test_cli_convert_and_calibrate(tmp_path, capsys):
    coco = shapes_dataset()
    assert main(["convert", str(shipped_onnx()), "--precision", "fp16", "-o", str(tmp_path / "m.fp16.onnx")]) == 0
    assert read_metadata(tmp_path / "m.fp16.onnx").precision == "fp16"
    capsys.readouterr()
    out = tmp_path / "m.int8.onnx"
    assert main(["calibrate", str(shipped_onnx()), "--coco", str(coco), "--num", "4", "--method", "minmax",
                 "--batch", "2", "--float-layers", "fp16", "-o", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["calibration_images"] == 4 and result["float_layers"] == "fp16"
    assert result["quantized_layers"] == len(quantizable_nodes(onnx.load(str(shipped_onnx()))))
    assert (tmp_path / "m.int8.calib.json").is_file() and open_model(str(out)).metadata.precision == "int8"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", str(shipped_onnx()), "--images", str(empty), "-o", str(tmp_path / "e.onnx")]) == 2
    assert "no images" in capsys.readouterr().err
