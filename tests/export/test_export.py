"""ONNX export: every variant and the shipped model run in ONNX Runtime and match PyTorch.

Plugin graphs run with our implementation of the plugin node (libdetrt_plugins through an
onnxruntime-extensions op); portable graphs in stock ONNX Runtime. Tolerances: fp32 end to end
through ~20 layers: scores within 1e-4 absolute, boxes within 1e-4 of the input size (boxes are in
pixels), raw logits and normalised boxes within 1e-4, labels exactly.
"""
from __future__ import annotations

import collections

import numpy as np
import onnx
import pytest
import torch
from polygraphy.backend.onnxrt import OnnxrtRunner
from polygraphy.common import TensorMetadata
from polygraphy.comparator import Comparator, SimpleCompareFunc

from detrt.detectors import Detector
from detrt.detectors.zoo import load_zoo
from detrt.export import DETRT_FUSED_PLUGIN, DETRT_PLUGIN, NVIDIA_PLUGIN, ExportOptions, export_onnx, read_metadata
from detrt.export.export_module import ExportModule
from detrt.export.ort_plugins import create_session
from support.torch_runner import TorchRunner
from support.variants import EXPORT_SIZE as SIZE, VARIANTS, exported_variant, small_detector


TOLERANCES = {"scores": 1e-4, "labels": 0.0, "boxes": 1e-4, "pred_logits": 1e-4, "pred_boxes": 1e-4}


def assert_matches_pytorch(detector: Detector, path, images: torch.Tensor, outputs: tuple[str, ...]) -> None:
    """Polygraphy's Comparator: PyTorch (ExportModule, the reference MSDA) vs ONNX Runtime on `path`,
    for `outputs` (box tolerances scale with the input size when boxes are in pixels)."""
    metadata = read_metadata(path)
    size = metadata.input_size
    metadata_in = TensorMetadata().add("images", np.float32, tuple(images.shape))
    module = ExportModule(detector, size, metadata.normalize_in_graph, raw="pred_logits" in metadata.outputs)
    reference = TorchRunner(module, metadata_in, list(metadata.outputs), name="pytorch")
    candidate = OnnxrtRunner(lambda: create_session(path), name="onnxruntime")
    results = Comparator.run([reference, candidate], data_loader=[{"images": images.numpy()}])
    tolerance = {name: TOLERANCES[name] * (max(size) if name == "boxes" else 1) for name in outputs}
    compare = SimpleCompareFunc(atol=tolerance, rtol=0.0,
                                find_output_func=lambda name, _, __: [name] if name in outputs else [])
    accuracy = Comparator.compare_accuracy(results, compare_func=compare)
    assert bool(accuracy), f"{path.name}: ONNX Runtime differs from PyTorch beyond {tolerance}"
    assert set(accuracy.output_names()) == set(outputs), accuracy.output_names()


def op_counts(path) -> dict[str, int]:  # noqa: ANN001
    return dict(collections.Counter(node.op_type for node in onnx.load(str(path)).graph.node))


@pytest.mark.parametrize("mode", ["plugin", "portable"])
@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_matches_pytorch_in_onnxruntime(name, mode):
    detector = small_detector(name)
    path = exported_variant(name, mode, batch=2 if mode == "plugin" else None)  # portable: dynamic batch, run at 2
    ops = op_counts(path)
    has_msda = detector.config.arch == "deformable_detr"
    assert (ops.get(DETRT_PLUGIN.name, 0) > 0) == (has_msda and mode == "plugin")
    assert ("GridSample" in ops) == (has_msda and mode == "portable")
    torch.manual_seed(1)
    # random weights give near-ties in the top-k, so compare the raw outputs (order-free) and the scores
    assert_matches_pytorch(detector, path, torch.rand(2, 3, *SIZE) * 255, ("scores", "pred_logits", "pred_boxes"))


@pytest.mark.parametrize("name", sorted(n for n, v in VARIANTS.items() if v["arch"] == "deformable_detr"))
def test_fused_plugin_graph_matches_pytorch(name):
    detector = small_detector(name)
    path = exported_variant(name, "plugin", fused=True)
    ops = op_counts(path)
    assert ops[DETRT_FUSED_PLUGIN.name] == 4 and DETRT_PLUGIN.name not in ops  # 2 + 2 layers
    assert read_metadata(path).plugin_name == DETRT_FUSED_PLUGIN.name
    torch.manual_seed(2)
    assert_matches_pytorch(detector, path, torch.rand(2, 3, *SIZE) * 255, ("scores", "pred_logits", "pred_boxes"))


@pytest.fixture(scope="module")
def shipped() -> Detector:
    return load_zoo("shapes-deformable-detr")


@pytest.fixture(scope="module")
def shipped_images() -> torch.Tensor:
    from detrt.detectors.preprocess import resize, to_float_image
    from detrt.detectors.data.shapes_dataset import render

    images = [resize(to_float_image(torch.from_numpy(np.array(render(7, i)[0])).permute(2, 0, 1)), (256, 256))
              for i in range(3)]
    return torch.stack(images) * 255


@pytest.mark.parametrize("mode", ["plugin", "nvidia", "portable"])
def test_shipped_model_matches_pytorch_in_onnxruntime(shipped, shipped_images, mode, tmp_path):
    path = tmp_path / f"shipped-{mode}.onnx"
    export_onnx(shipped, path, ExportOptions(msda=mode, batch=None))
    assert_matches_pytorch(shipped, path, shipped_images, ("scores", "labels", "boxes"))
    scores = create_session(path).run(["scores"], {"images": shipped_images.numpy()})[0]
    assert (scores > 0.5).sum() >= 3  # real detections, not an empty comparison


def test_plugin_node_is_what_tensorrt_parses(shipped, tmp_path):
    path = tmp_path / "plugin.onnx"
    export_onnx(shipped, path, ExportOptions(msda="plugin"))
    model = onnx.load(str(path))
    nodes = [n for n in model.graph.node if n.op_type == DETRT_PLUGIN.name]
    assert len(nodes) == 6  # 3 encoder + 3 decoder layers
    types = {v.name: v.type.tensor_type for v in (*model.graph.value_info, *model.graph.initializer)
             if hasattr(v, "type")}
    initializers = {t.name: t for t in model.graph.initializer}
    for node in nodes:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert node.domain == DETRT_PLUGIN.domain
        assert attributes["plugin_version"] == b"1" and attributes["plugin_namespace"] == b"detrt"
        assert attributes["spatial_shapes"] == [32, 32, 16, 16, 8, 8]  # strides 8, 16, 32 of 256x256
        for index in (1, 2):
            assert initializers[node.input[index]].data_type == onnx.TensorProto.INT32
        output = types[node.output[0]]
        assert [d.dim_value for d in output.shape.dim][::2] == [1, 128]  # (N, Lq, M*D)
    assert {"detrt": 1} == {o.domain: o.version for o in model.opset_import if o.domain == "detrt"}


def test_nvidia_mode_has_the_builtin_plugin_signature(shipped, tmp_path):
    path = tmp_path / "nvidia.onnx"
    export_onnx(shipped, path, ExportOptions(msda="nvidia"))
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inferred = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type for v in (*inferred.graph.value_info, *inferred.graph.output)}
    types.update({t.name: onnx.helper.make_tensor_type_proto(t.data_type, t.dims).tensor_type
                  for t in inferred.graph.initializer})
    nodes = [n for n in model.graph.node if n.op_type == NVIDIA_PLUGIN.name]
    assert len(nodes) == 6
    float_, int32 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT32
    for node in nodes:
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attributes == {"plugin_version": b"2", "plugin_namespace": b""}
        signature = [(types[name].elem_type, len(types[name].shape.dim)) for name in node.input]
        assert signature == [(float_, 4), (int32, 2), (int32, 1), (float_, 6), (float_, 5)]
        output = types[node.output[0]]
        assert [d.dim_value for d in output.shape.dim] == [1, int(types[node.input[3]].shape.dim[1].dim_value), 4, 32]
        consumers = [n for n in model.graph.node if node.output[0] in n.input]
        assert [n.op_type for n in consumers] == ["Reshape"]  # back to (N, Lq, M*D)


def test_metadata_describes_the_graph(shipped, tmp_path):
    path = tmp_path / "model.onnx"
    report = export_onnx(shipped, path, ExportOptions(msda="plugin", batch=None, raw=True))
    metadata = read_metadata(path)
    assert metadata.arch == "deformable_detr" and metadata.class_names == tuple(shipped.class_names)
    assert metadata.input_size == (256, 256) and metadata.batch is None and metadata.normalize_in_graph
    assert metadata.mean == shipped.preprocess.mean and metadata.std == shipped.preprocess.std
    assert (metadata.msda, metadata.plugin_name, metadata.plugin_version) == ("plugin", DETRT_PLUGIN.name, "1")
    assert metadata.outputs == ("scores", "labels", "boxes", "pred_logits", "pred_boxes")
    assert report.outputs["boxes"] == ["batch", 40, 4] and report.outputs["pred_logits"] == ["batch", 40, 6]
    assert report.plugin_nodes == 6 and report.parameters > 1_000_000


def test_normalisation_out_of_the_graph(shipped, shipped_images, tmp_path):
    path = tmp_path / "normalised-input.onnx"
    export_onnx(shipped, path, ExportOptions(msda="portable", normalize_in_graph=False))
    assert not read_metadata(path).normalize_in_graph
    mean = torch.tensor(shipped.preprocess.mean).view(1, 3, 1, 1)
    std = torch.tensor(shipped.preprocess.std).view(1, 3, 1, 1)
    assert_matches_pytorch(shipped, path, ((shipped_images[:1] / 255 - mean) / std).float(),
                           ("scores", "labels", "boxes"))
