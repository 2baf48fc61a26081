"""What an exported ONNX says about itself (ONNX `metadata_props`), so runtimes configure nothing twice.

Every key is ``detrt.<field>`` with a JSON value. Runtimes read it back with `read_metadata`.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
import math
from dataclasses import dataclass
from pathlib import Path

import onnx
from detrt.detectors import (
    Detector,
    DetrtError,
    check_input_size,
    normalize,
    resize,
    to_float_image,
)
from torch import Tensor, nn

from .onnx_passes import load_onnx

PREFIX = "detrt."
MAX_BATCH = 4096


class NotADetrtModelError(DetrtError, ValueError):
    """The ONNX file was not written by `detrt export`, or its detrt metadata is invalid."""


_EXPORT_AGAIN = "export the model again with `detrt export`"
_CHOICES = {"msda": ("plugin", "nvidia", "portable", "none"), "precision": ("fp32", "fp16", "int8")}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)  # type: ignore[arg-type]


def _field_problem(name: str, value: object) -> str | None:
    """What is wrong with one metadata value (None: it is valid): types, ranges and choices per field."""
    if name in _CHOICES:
        return None if value in _CHOICES[name] else f"must be one of {_CHOICES[name]}"
    if name in ("class_names", "outputs"):
        ok = isinstance(value, list) and value and all(isinstance(v, str) for v in value)
        return None if ok else "must be a non-empty list of strings"
    if name in ("mean", "std"):
        ok = isinstance(value, list) and len(value) == 3 and all(_is_number(v) for v in value)
        return None if ok and (name == "mean" or min(value) > 0) else "must be 3 finite numbers (std positive)"
    if name == "input_size":
        return None  # check_input_size names the limit
    if name == "normalize_in_graph":
        return None if isinstance(value, bool) else "must be true or false"
    if name == "batch":
        return None if value is None or (_is_int(value) and 1 <= value <= MAX_BATCH) else \
            f"must be null (dynamic) or a whole number in 1..{MAX_BATCH}"
    if name == "opset":
        return None if _is_int(value) and 0 <= value <= 1000 else "must be a whole number (the ONNX opset)"
    return None if isinstance(value, str) else "must be a string"


@dataclass(frozen=True)
class ModelMetadata:
    """How to feed an exported detector and read its outputs."""

    detrt_version: str
    arch: str
    class_names: tuple[str, ...]
    input_size: tuple[int, int]  # (H, W) of the `images` input
    mean: tuple[float, float, float]  # of 0..1 images
    std: tuple[float, float, float]
    normalize_in_graph: bool  # True: `images` holds 0..255 RGB; False: already normalised
    batch: int | None  # None: dynamic
    msda: str  # plugin | nvidia | portable | none (no MSDA in this architecture)
    plugin_name: str  # "" when the graph has no plugin node
    plugin_version: str
    outputs: tuple[str, ...]
    precision: str  # fp32 | fp16 | int8
    weights_sha256: str  # fingerprint of the PyTorch weights the graph came from
    opset: int

    def network_input(self, image: Tensor) -> Tensor:
        """One (3, H, W) RGB image (uint8 or 0..1 float) -> its row of the `images` input."""
        pixels = resize(to_float_image(image), tuple(self.input_size))
        return pixels * 255.0 if self.normalize_in_graph else normalize(pixels, self.mean, self.std)

    def to_props(self) -> dict[str, str]:
        """As ONNX metadata_props entries."""
        return {PREFIX + key: json.dumps(value) for key, value in dataclasses.asdict(self).items()}

    @classmethod
    def from_props(cls, props: dict[str, str]) -> "ModelMetadata":
        """Inverse of `to_props`; a clear error when the keys are missing."""
        names = [field.name for field in dataclasses.fields(cls)]
        missing = [name for name in names if PREFIX + name not in props]
        if len(missing) == len(names):
            raise NotADetrtModelError("this ONNX has no detrt metadata; export it with `detrt export`")
        if missing:
            raise NotADetrtModelError(f"this ONNX lacks the detrt metadata {missing}; export it again with `detrt export`")
        values = {}
        for name in names:
            try:
                values[name] = json.loads(props[PREFIX + name])
            except ValueError:
                raise NotADetrtModelError(f"the detrt metadata field {name} is not valid JSON "
                                          f"({props[PREFIX + name][:40]!r}); {_EXPORT_AGAIN}") from None
        for name, value in values.items():
            problem = _field_problem(name, value)
            if problem:
                raise NotADetrtModelError(f"the detrt metadata field {name} {problem}, got {value!r:.80}; {_EXPORT_AGAIN}")
        check_input_size(values["input_size"], "the detrt metadata field input_size")
        for name in ("class_names", "input_size", "mean", "std", "outputs"):
            values[name] = tuple(values[name])
        return cls(**values)


def describe_detector(detector: Detector, input_size: tuple[int, int], *, normalize_in_graph: bool,
                      batch: int | None, msda: str, plugin_name: str = "", plugin_version: str = "",
                      outputs: tuple[str, ...], precision: str = "fp32", opset: int = 0) -> ModelMetadata:
    """The metadata of `detector` served at `input_size`: what the detector knows (architecture,
    classes, mean/std, weights fingerprint) plus how it is served (the keyword arguments)."""
    return ModelMetadata(
        detrt_version=importlib.metadata.version("detrt"), arch=detector.config.arch,
        class_names=tuple(detector.class_names), input_size=input_size, mean=tuple(detector.preprocess.mean),
        std=tuple(detector.preprocess.std), normalize_in_graph=normalize_in_graph, batch=batch, msda=msda,
        plugin_name=plugin_name, plugin_version=plugin_version, outputs=outputs, precision=precision,
        weights_sha256=weights_fingerprint(detector.model), opset=opset)


def read_metadata(model: onnx.ModelProto | str | Path) -> ModelMetadata:
    """The detrt metadata of an ONNX model (a loaded proto or a path; weights are not read)."""
    if not isinstance(model, onnx.ModelProto):
        model = load_onnx(model, load_external_data=False)
    metadata = ModelMetadata.from_props({prop.key: prop.value for prop in model.metadata_props})
    images = model.graph.input[0].type.tensor_type.shape.dim if model.graph.input else []
    graph_size = tuple(d.dim_value if d.HasField("dim_value") else None for d in images)[2:]
    if len(graph_size) == 2 and None not in graph_size and graph_size != metadata.input_size:
        raise NotADetrtModelError(f"the detrt metadata field input_size {list(metadata.input_size)} differs from the "
                                  f"graph's input {list(graph_size)}; {_EXPORT_AGAIN}")
    return metadata


def write_metadata(model: onnx.ModelProto, metadata: ModelMetadata) -> None:
    """Replace the detrt entries of `model.metadata_props` with `metadata`."""
    kept = [prop for prop in model.metadata_props if not prop.key.startswith(PREFIX)]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.helper.set_model_props(model, {**{p.key: p.value for p in kept}, **metadata.to_props()})


def weights_fingerprint(model: nn.Module) -> str:
    """SHA-256 over the names, shapes and values of a module's state dict (order independent)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()
