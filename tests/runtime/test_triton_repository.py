"""`detrt triton` repositories checked for structure against the exported graph: files, and config.pbtxt
parsed with Triton's own ModelConfig protobuf (from tritonclient).

The `onnxruntime` and `tensorrt` repositories are NOT loaded by a server here: PyPI's tritonserver has
the Python backend only, and this machine has no GPU. The engine below is a stand-in file (TensorRT
cannot build one here) with a sidecar as `detrt build` writes it; the writer only copies it.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import onnx
import pytest

from detrt.export import read_metadata
from detrt.runtime.cli import main
from detrt.runtime.backends.tensorrt.sidecar import sidecar_path, write_sidecar
from detrt.runtime.triton.config import ONNX_TO_TRITON
from detrt.runtime.triton.repository import RepositoryOptions, write_repository
from support.shipped import shipped_onnx

if importlib.util.find_spec("tritonclient") is None:
    pytest.skip("tritonclient is not installed: pip install 'detrt[triton]'", allow_module_level=True)

from google.protobuf import text_format  # noqa: E402 (tritonclient brings protobuf)
from tritonclient.grpc import model_config_pb2 as pb  # noqa: E402

pytestmark = pytest.mark.slow  # the shared export takes ~15 s when no other test made it first


def _config(repository: Path, name: str) -> pb.ModelConfig:
    return text_format.Parse((repository / name / "config.pbtxt").read_text(), pb.ModelConfig())


def _graph_io(path: Path) -> dict[str, tuple[str, list[int]]]:
    """name -> (Triton type, dims without the batch dimension) of the graph's inputs and outputs."""
    proto = onnx.load(str(path), load_external_data=False)
    return {value.name: (ONNX_TO_TRITON[value.type.tensor_type.elem_type],
                         [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim][1:])
            for value in (*proto.graph.input, *proto.graph.output)}


def _io(tensors: object) -> dict[str, tuple[str, list[int]]]:
    return {t.name: (pb.DataType.Name(t.data_type), list(t.dims)) for t in tensors}


DETECTION_IO = {"boxes": ("TYPE_FP32", [40, 4]), "scores": ("TYPE_FP32", [40]), "labels": ("TYPE_INT64", [40]),
                "names": ("TYPE_STRING", [40])}


def _check_ensemble(repository: Path, name: str, graph: Path, platform: str, batch: int) -> pb.ModelConfig:
    graph_io = _graph_io(graph)
    ensemble = _config(repository, name)
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == batch
    assert _io(ensemble.input) == {"image": ("TYPE_STRING", [1])} and _io(ensemble.output) == DETECTION_IO
    assert json.loads(ensemble.parameters["class_names"].string_value) == list(read_metadata(graph).class_names)
    steps = [step.model_name for step in ensemble.ensemble_scheduling.step]
    assert steps == [f"{name}_preprocess", f"{name}_network", f"{name}_postprocess"]
    network = _config(repository, f"{name}_network")
    assert network.platform == platform and network.max_batch_size == batch and network.HasField("dynamic_batching")
    assert {**_io(network.input), **_io(network.output)} == graph_io  # names, types, shapes as in the graph
    preprocess, postprocess = _config(repository, f"{name}_preprocess"), _config(repository, f"{name}_postprocess")
    assert _io(preprocess.output)["images"] == graph_io["images"] == ("TYPE_FP32", [3, 256, 256])
    assert _io(postprocess.output) == DETECTION_IO
    assert {k: v for k, v in _io(postprocess.input).items() if k != "original_size"} == \
        {k: graph_io[k] for k in ("scores", "labels", "boxes")}
    for part in ("preprocess", "postprocess"):  # both ends carry the graph's metadata, for `Model.prepare`/`finish`
        settings = json.loads((repository / f"{name}_{part}" / "1" / "detrt.json").read_text())
        assert settings["mode"] == part and settings["metadata"] == read_metadata(graph).to_props()
        assert (repository / f"{name}_{part}" / "1" / "model.py").is_file()
    # the steps' tensor maps connect: every input a step reads was produced before it (or is the ensemble's)
    produced = {"image"}
    for step in ensemble.ensemble_scheduling.step:
        assert set(step.input_map.values()) <= produced, step
        produced |= set(step.output_map.values())
    assert set(DETECTION_IO) <= produced
    return network


def test_python_repository_of_an_onnx(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = shipped_onnx("portable")
    code = main(["triton", str(graph), "-o", str(tmp_path), "--name", "shapes", "--max-batch", "4", "--instances",
                 "2", "--json"])
    assert code == 0 and json.loads(capsys.readouterr().out)["models"] == ["shapes"]
    config = _config(tmp_path, "shapes")
    assert config.backend == "python" and config.max_batch_size == 4
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert config.dynamic_batching.max_queue_delay_microseconds > 0
    assert _io(config.input) == {"image": ("TYPE_STRING", [1])} and _io(config.output) == DETECTION_IO
    assert (tmp_path / "shapes" / "1" / "model.onnx").read_bytes() == graph.read_bytes()
    settings = json.loads((tmp_path / "shapes" / "1" / "detrt.json").read_text())
    assert settings["mode"] == "detect" and settings["model"] == "model.onnx" and settings["device"] == "cpu"


def test_python_repository_of_a_zoo_name_opens_it_by_name(tmp_path: Path) -> None:
    write_repository("shapes-deformable-detr", tmp_path, RepositoryOptions(device="cuda"))
    config = _config(tmp_path, "shapes-deformable-detr")
    assert config.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert _io(config.output)["boxes"] == ("TYPE_FP32", [-1, 4])  # K is known only once the model runs
    assert sorted(p.name for p in (tmp_path / "shapes-deformable-detr" / "1").iterdir()) == ["detrt.json", "model.py"]
    settings = json.loads((tmp_path / "shapes-deformable-detr" / "1" / "detrt.json").read_text())
    assert settings["model"] == "shapes-deformable-detr" and settings["device"] == "cuda"


def test_onnxruntime_repository_is_an_ensemble_matching_the_graph(tmp_path: Path) -> None:
    graph = shipped_onnx("portable")
    write_repository(graph, tmp_path, RepositoryOptions(name="shapes", backend="onnxruntime", max_batch=8))
    network = _check_ensemble(tmp_path, "shapes", graph, "onnxruntime_onnx", 8)
    assert network.instance_group[0].kind == pb.ModelInstanceGroup.KIND_CPU
    assert (tmp_path / "shapes_network" / "1" / "model.onnx").read_bytes() == graph.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shapes", "shapes_network", "shapes_postprocess",
                                                          "shapes_preprocess"]  # no staging folder left


def test_tensorrt_repository_puts_the_engine_as_a_plan(tmp_path: Path) -> None:
    graph = shipped_onnx("portable")
    engine = tmp_path / "shapes.engine"
    engine.write_bytes(b"stand-in: TensorRT cannot build an engine on this machine")
    write_sidecar(engine, {"tensorrt_version": "10.3.0", "gpu": "NVIDIA H100", "compute_capability": "9.0",
                           "input_shapes": {"images": [[1, 3, 256, 256], [4, 3, 256, 256], [8, 3, 256, 256]]},
                           "onnx": {"path": str(graph)}, "plugins": [],
                           "metadata_props": read_metadata(graph).to_props()})
    write_repository(engine, tmp_path / "repo", RepositoryOptions(name="shapes", backend="tensorrt", device="cuda"))
    network = _check_ensemble(tmp_path / "repo", "shapes", graph, "tensorrt_plan", 8)
    assert network.instance_group[0].kind == pb.ModelInstanceGroup.KIND_GPU
    assert (tmp_path / "repo" / "shapes_network" / "1" / "model.plan").read_bytes() == engine.read_bytes()
    with pytest.raises(ValueError, match=r"runs batches of 1\.\.8, but the repository batches 1\.\.16: rebuild"):
        write_repository(engine, tmp_path / "other", RepositoryOptions(backend="tensorrt", max_batch=16))
    sidecar = json.loads(sidecar_path(engine).read_text())
    rtx = {"tensorrt_flavour": "tensorrt-rtx", "tensorrt_version": "1.7.1.116", "gpu": None, "compute_capability": None,
           "compute_capabilities": ["8.6", "8.9"]}  # what `detrt build --flavour rtx` records
    write_sidecar(engine, {**sidecar, **rtx})
    with pytest.raises(ValueError, match="TensorRT-RTX engine, which Triton's TensorRT backend .* cannot load"):
        write_repository(engine, tmp_path / "other", RepositoryOptions(backend="tensorrt"))


def _edited(graph: Path, folder: Path, edit: object) -> Path:
    proto = onnx.load(str(graph))
    edit(proto)  # type: ignore[operator]
    path = folder / "edited.onnx"
    onnx.save(proto, str(path))
    return path


def test_graphs_an_ensemble_cannot_serve_are_refused_with_the_fix(tmp_path: Path) -> None:
    graph = shipped_onnx("portable")

    def rename_to_plugin(proto: onnx.ModelProto) -> None:
        next(node for node in proto.graph.node if node.op_type == "GridSample").op_type = "DetrtMultiscaleDeformableAttn"

    def fix_batch(proto: onnx.ModelProto) -> None:
        proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1

    cases = ((rename_to_plugin, "plugin nodes, which Triton's ONNX Runtime backend cannot run: export it with "
                                "--msda portable, or serve it with --backend python"),
             (fix_batch, "has a fixed batch size; the dynamic batcher needs a dynamic one: export with --batch dynamic"))
    for edit, message in cases:
        with pytest.raises(ValueError, match=message):
            write_repository(_edited(graph, tmp_path, edit), tmp_path / "repo", RepositoryOptions(backend="onnxruntime"))
    assert not (tmp_path / "repo").exists() or not any((tmp_path / "repo").iterdir())  # nothing half-written


def test_bad_options_and_taken_names_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    graph = str(shipped_onnx("portable"))
    assert main(["triton", graph, "-o", str(tmp_path), "--name", "a"]) == 0
    capsys.readouterr()
    for args, message in ((["--name", "a"], "already holds the model(s) a: remove them or choose another --name"),
                          (["--backend", "onnx"], "--backend must be one of python, onnxruntime, tensorrt"),
                          (["--max-batch", "0"], "--max-batch and --instances must be at least 1"),
                          (["--name", "a b"], "is not a valid Triton model name"),
                          (["--backend", "tensorrt"], "--backend tensorrt serves an engine built by `detrt build`")):
        assert main(["triton", graph, "-o", str(tmp_path), *args]) == 2
        error = capsys.readouterr().err
        assert message in error and error.count("\n") == 1, error
    assert main(["triton", str(tmp_path / "missing.onnx"), "-o", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
