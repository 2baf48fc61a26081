"""`detrt triton`: a Triton Inference Server model repository for any model `runtime.open` takes.

Clients send encoded images (BYTES input ``image``, one JPEG/PNG per batch row) and get ``boxes``
(xyxy, the image's own pixels), ``scores``, ``labels`` and ``names``; the class names are also in
the config's ``class_names`` parameter. Pre- and post-processing run in the repository, driven by
the ONNX metadata, so clients need no detrt. Backends:

- ``python``: one Python-backend model running detrt's own runtime (ONNX Runtime, TensorRT or
  PyTorch, plugin graphs on the CPU included);
- ``onnxruntime`` / ``tensorrt``: an ensemble of a Python pre-processing model, the network on
  Triton's own backend (a portable ONNX, or an engine with its plugin library beside it), and a
  Python post-processing model.

Each model folder is written complete in a staging folder, then renamed into the repository.
"""
from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import onnx
from detrt.detectors import InputError, MissingFileError, write_json_atomic
from detrt.export import ModelMetadata, load_onnx, plugin_nodes, read_metadata

from ..backends.base import INPUT_NAME, OUTPUT_NAMES
from ..backends.tensorrt.flavour import RTX
from ..backends.tensorrt.sidecar import flavour, read_sidecar, sidecar_path
from ..model import CHECKPOINT_SUFFIXES, ENGINE_SUFFIXES, ONNX_SUFFIXES
from .config import TensorSpec, class_names_parameter, graph_tensors, model_config
from .images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS
from .python_model import IMAGE_INPUT, NAMES_OUTPUT, SETTINGS_FILE, SIZE_TENSOR

BACKENDS = ("python", "onnxruntime", "tensorrt")
VERSION = "1"
QUEUE_DELAY_US = 2000
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MODEL_PY = ('"""Triton Python-backend model written by `detrt triton`; the code is detrt\'s '
            '(detrt.runtime.triton.python_model)."""\n'
            "from detrt.runtime.triton.python_model import TritonPythonModel  # noqa: F401\n")
IMAGE_SPEC = TensorSpec(IMAGE_INPUT, "TYPE_STRING", (1,))


@dataclass(frozen=True)
class RepositoryOptions:
    """How `write_repository` serves the model."""

    name: str | None = None  # default: the model file's stem (or the zoo name)
    max_batch: int = 8  # images per execution the dynamic batcher may form
    instances: int = 1  # model instances (per GPU with KIND_GPU)
    backend: str = "python"
    device: str = "cpu"  # python backend: where detrt's runtime runs; ensembles: where the network runs
    threads: int = 0  # python backend: CPU threads of ONNX Runtime / PyTorch (0: their default)
    plugin_lib: str | None = None  # tensorrt: libdetrt_trt_plugins to put beside the engine


@dataclass
class _Source:
    """What the repository needs to know about the model it serves."""

    class_names: tuple[str, ...]
    detections: int  # K, detections per image (-1: not known before running)
    files: dict[str, Path]  # file name in the version folder -> the file to copy
    model: str  # what the Python model opens: a file name in the version folder, or a zoo name


def detection_outputs(count: int) -> list[TensorSpec]:
    """The tensors every repository answers with, for `count` detections per image."""
    return [TensorSpec("boxes", "TYPE_FP32", (count, 4)), TensorSpec("scores", "TYPE_FP32", (count,)),
            TensorSpec("labels", "TYPE_INT64", (count,)), TensorSpec(NAMES_OUTPUT, "TYPE_STRING", (count,))]


def _instance_kind(device: str) -> str:
    return "KIND_CPU" if device == "cpu" else "KIND_GPU"


def _settings(mode: str, **values: object) -> dict:
    return {"mode": mode, "max_image_bytes": MAX_IMAGE_BYTES, "max_image_pixels": MAX_IMAGE_PIXELS, **values}


def _onnx_source(path: Path) -> _Source:
    proto = load_onnx(path, load_external_data=False)
    metadata = read_metadata(proto)
    _, outputs, _ = graph_tensors(proto)
    scores = next((spec for spec in outputs if spec.name == "scores"), None)
    count = scores.dims[0] if scores is not None and scores.dims else -1
    return _Source(metadata.class_names, count, {"model.onnx": path}, "model.onnx")


def _describe(source: str) -> _Source:
    """Class names, detection count and files of a zoo name, checkpoint, ONNX or engine."""
    path = Path(source)
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES + ENGINE_SUFFIXES + CHECKPOINT_SUFFIXES and not path.is_file():
        raise MissingFileError(f"model {source} does not exist")
    if suffix in ONNX_SUFFIXES:
        return _onnx_source(path)
    if suffix in ENGINE_SUFFIXES:
        metadata = ModelMetadata.from_props(read_sidecar(path)["metadata_props"])
        name = f"model{suffix}"
        return _Source(metadata.class_names, -1, {name: path, name + ".json": sidecar_path(path)}, name)
    from ..model import open_model

    model = open_model(source)  # a zoo name or a checkpoint; anything else is refused here with the choices
    if suffix in CHECKPOINT_SUFFIXES:
        return _Source(tuple(model.class_names), -1, {f"model{suffix}": path}, f"model{suffix}")
    return _Source(tuple(model.class_names), -1, {}, source)


def _write_model(stage: Path, name: str, config: str, settings: dict | None = None,
                 files: dict[str, Path] | None = None) -> None:
    folder = stage / name / VERSION
    folder.mkdir(parents=True)
    (stage / name / "config.pbtxt").write_text(config)
    if settings is not None:
        write_json_atomic(folder / SETTINGS_FILE, settings)
        (folder / "model.py").write_text(MODEL_PY)
    for file_name, path in (files or {}).items():
        shutil.copy2(path, folder / file_name)


def _python_models(source: str, stage: Path, name: str, options: RepositoryOptions) -> list[str]:
    described = _describe(source)
    device = "cuda" if Path(described.model).suffix in ENGINE_SUFFIXES and options.device == "cpu" else options.device
    config = model_config(name, backend="python", max_batch_size=options.max_batch, inputs=[IMAGE_SPEC],
                          outputs=detection_outputs(described.detections), instances=options.instances,
                          instance_kind=_instance_kind(device), queue_delay_us=QUEUE_DELAY_US,
                          parameters=class_names_parameter(described.class_names))
    settings = _settings("detect", model=described.model, device=device, threads=options.threads)
    _write_model(stage, name, config, settings, described.files)
    return [name]


def _network_graph(source: str, options: RepositoryOptions) -> tuple[onnx.ModelProto, dict[str, Path], str]:
    """The ONNX that describes the network's I/O, the files of the network model, and its platform."""
    path = Path(source)
    suffix = path.suffix.lower()
    if options.backend == "onnxruntime":
        if suffix not in ONNX_SUFFIXES or not path.is_file():
            raise InputError(f"--backend onnxruntime serves an ONNX written by `detrt export`, not {source!r}")
        proto = load_onnx(path, load_external_data=False)
        if plugin_nodes(proto):
            raise InputError(f"{source} has TensorRT plugin nodes, which Triton's ONNX Runtime backend cannot run: "
                             "export it with --msda portable, or serve it with --backend python")
        return proto, {"model.onnx": path}, "onnxruntime_onnx"
    if suffix not in ENGINE_SUFFIXES or not path.is_file():
        raise InputError(f"--backend tensorrt serves an engine built by `detrt build`, not {source!r}")
    sidecar = read_sidecar(path)
    if flavour(sidecar) == RTX:
        raise InputError(f"{path} is a TensorRT-RTX engine, which Triton's TensorRT backend (standard TensorRT) cannot "
                         "load: serve it with --backend python --device cuda on an RTX GPU")
    onnx_path = Path(sidecar.get("onnx", {}).get("path", ""))
    if not onnx_path.is_file():
        raise MissingFileError(f"the ONNX {onnx_path} that {path} was built from (named in its sidecar) is needed "
                                "for the engine's input and output types; put it back there or rebuild the engine")
    low, _, high = sidecar["input_shapes"][INPUT_NAME]
    if low[0] != 1 or high[0] < options.max_batch:
        raise InputError(f"{path} runs batches of {low[0]}..{high[0]}, but the repository batches 1..{options.max_batch}"
                         f": rebuild it with `detrt build {onnx_path} --batch 1:{options.max_batch}:{options.max_batch}`"
                         " or lower --max-batch")
    files = {"model.plan": path}
    if ModelMetadata.from_props(sidecar["metadata_props"]).msda == "plugin":
        from ..backends.tensorrt.plugins import LIBRARY_FILE, find_plugin_library

        files[LIBRARY_FILE] = find_plugin_library(options.plugin_lib)
    return load_onnx(onnx_path, load_external_data=False), files, "tensorrt_plan"


def _step(model: str, inputs: dict[str, str], outputs: dict[str, str]) -> str:
    maps = [f"input_map {{ key: \"{k}\" value: \"{v}\" }}" for k, v in inputs.items()]
    maps += [f"output_map {{ key: \"{k}\" value: \"{v}\" }}" for k, v in outputs.items()]
    return f"  {{ model_name: \"{model}\" model_version: -1 " + " ".join(maps) + " }"


def _ensemble_models(source: str, stage: Path, name: str, options: RepositoryOptions) -> list[str]:
    proto, files, platform = _network_graph(source, options)
    metadata = read_metadata(proto)
    inputs, outputs, dynamic = graph_tensors(proto)
    network_outputs = [spec for spec in outputs if spec.name in OUTPUT_NAMES]
    if not dynamic:
        raise InputError(f"{source} has a fixed batch size; the dynamic batcher needs a dynamic one: export with "
                         "--batch dynamic (and build engines with --batch 1:B:B)")
    if [spec.name for spec in inputs] != [INPUT_NAME] or inputs[0].data_type != "TYPE_FP32" or \
            len(network_outputs) != len(OUTPUT_NAMES):
        raise InputError(f"{source} is not a detrt detector graph (float32 input {INPUT_NAME!r}, outputs "
                         f"{', '.join(OUTPUT_NAMES)}); export it with `detrt export`")
    count = next(spec.dims[0] for spec in network_outputs if spec.name == "scores")
    stages = {part: f"{name}_{part}" for part in ("preprocess", "network", "postprocess")}
    size = TensorSpec(SIZE_TENSOR, "TYPE_INT32", (2,))
    batch, kind = options.max_batch, _instance_kind(options.device)
    settings = {"metadata": metadata.to_props()}
    _write_model(stage, stages["preprocess"], model_config(
        stages["preprocess"], backend="python", max_batch_size=batch, inputs=[IMAGE_SPEC], outputs=[inputs[0], size],
        instances=options.instances, queue_delay_us=QUEUE_DELAY_US), _settings("preprocess", **settings))
    _write_model(stage, stages["network"], model_config(
        stages["network"], platform=platform, max_batch_size=batch, inputs=inputs, outputs=network_outputs,
        instances=options.instances, instance_kind=kind, queue_delay_us=QUEUE_DELAY_US), files=files)
    _write_model(stage, stages["postprocess"], model_config(
        stages["postprocess"], backend="python", max_batch_size=batch, inputs=[*network_outputs, size],
        outputs=detection_outputs(count), instances=options.instances, queue_delay_us=QUEUE_DELAY_US),
        _settings("postprocess", **settings))
    raw = {spec.name: f"network_{spec.name}" for spec in network_outputs}
    steps = [_step(stages["preprocess"], {IMAGE_INPUT: IMAGE_INPUT}, {INPUT_NAME: INPUT_NAME, SIZE_TENSOR: SIZE_TENSOR}),
             _step(stages["network"], {INPUT_NAME: INPUT_NAME}, raw),
             _step(stages["postprocess"], {**raw, SIZE_TENSOR: SIZE_TENSOR},
                   {spec.name: spec.name for spec in detection_outputs(count)})]
    scheduling = "ensemble_scheduling { step [\n" + ",\n".join(steps) + "\n] }"
    (stage / name).mkdir()
    (stage / name / VERSION).mkdir()  # an ensemble's version folder is empty
    (stage / name / "config.pbtxt").write_text(model_config(
        name, platform="ensemble", max_batch_size=batch, inputs=[IMAGE_SPEC], outputs=detection_outputs(count),
        parameters=class_names_parameter(metadata.class_names), extra=scheduling))
    return [name, *stages.values()]


def default_name(source: str) -> str:
    """The model name used when none is given: the file's stem, or the zoo name."""
    stem = Path(source).stem if Path(source).suffix else source
    return re.sub(r"[^A-Za-z0-9_.-]", "_", stem) or "detrt"


def _check(options: RepositoryOptions, name: str) -> None:
    if options.backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, got {options.backend!r}")
    if options.max_batch < 1 or options.instances < 1:
        raise InputError(f"--max-batch and --instances must be at least 1, got {options.max_batch} and "
                         f"{options.instances}")
    if not NAME_PATTERN.match(name):
        raise InputError(f"--name {name!r} is not a valid Triton model name: use letters, digits, '_', '-' and '.'")


@contextmanager
def _staging(repository: Path) -> Iterator[Path]:
    repository.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".detrt-triton-", dir=repository))
    try:
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def write_repository(source: str | Path, repository: str | Path, options: RepositoryOptions = RepositoryOptions()) -> dict:
    """Add the model(s) serving `source` to the Triton repository folder; returns a summary."""
    source, repository = str(source), Path(repository)
    name = options.name or default_name(source)
    _check(options, name)
    writer = _python_models if options.backend == "python" else _ensemble_models
    with _staging(repository) as stage:
        names = writer(source, stage, name, options)
        taken = [model for model in names if (repository / model).exists()]
        if taken:
            raise FileExistsError(f"{repository} already holds the model(s) {', '.join(taken)}: remove them or choose "
                                  "another --name")
        for model in names:
            (stage / model).rename(repository / model)
    return {"repository": str(repository), "models": names, "backend": options.backend,
            "config": str(repository / name / "config.pbtxt"),
            "serve": f"tritonserver --model-repository={repository.resolve()}"}
