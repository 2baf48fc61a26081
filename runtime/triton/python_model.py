"""The Python-backend model of a `detrt triton` repository; each repository's model.py imports it.

It runs inside tritonserver's Python stub (where `triton_python_backend_utils` exists) in one of
three modes, read from the version folder's detrt.json:
- ``detect`` (`--backend python`): encoded images in, detections out, with detrt's own runtime
  (any model `runtime.open` takes, plugin graphs on the CPU included);
- ``preprocess`` / ``postprocess``: the two ends of the ensemble around a TensorRT or ONNX Runtime
  network: images resized and scaled as the ONNX metadata says, boxes mapped back to each image.

Every request of a dynamically batched call is decoded on its own (a bad one gets its own error
response, the others are answered) and the good images run through the network as one batch.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from detrt.detectors import Detections, InputError
from detrt.export import ModelMetadata

from ..backends.base import INPUT_NAME, OUTPUT_NAMES, BatchRange
from ..model import Model, Prepared
from .images import MAX_IMAGE_BYTES, MAX_IMAGE_PIXELS, ImageRequestError, decode_image

SETTINGS_FILE = "detrt.json"
IMAGE_INPUT = "image"  # BYTES [1] per batch row: one encoded JPEG/PNG
SIZE_TENSOR = "original_size"  # INT32 [2] (height, width), between the ensemble's ends
NAMES_OUTPUT = "names"  # BYTES [K]: the class name of each detection


class MetadataOnly:
    """A stand-in backend for the ensemble's ends: the metadata drives `Model.prepare` and `Model.finish`;
    the network runs in another model of the repository."""

    name = "triton-ensemble"
    device = "cpu"
    batch = BatchRange()

    def __init__(self, metadata: ModelMetadata) -> None:
        self.metadata = metadata

    def infer(self, images: np.ndarray) -> dict[str, np.ndarray]:
        raise RuntimeError("the network of an ensemble runs in its own Triton model, not here")


def detections_arrays(detections: list[Detections]) -> dict[str, np.ndarray]:
    """The response tensors of one request: boxes (n, K, 4), scores (n, K), labels (n, K), names (n, K)."""
    return {"boxes": np.stack([d.boxes.numpy().astype(np.float32) for d in detections]),
            "scores": np.stack([d.scores.numpy().astype(np.float32) for d in detections]),
            "labels": np.stack([d.labels.numpy().astype(np.int64) for d in detections]),
            NAMES_OUTPUT: np.array([[name.encode() for name in d.names()] for d in detections], dtype=np.object_)}


class TritonPythonModel:
    """Triton's Python-backend entry points (initialize, execute)."""

    def initialize(self, args: dict) -> None:
        """Open the model named in the version folder's detrt.json."""
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        folder = Path(args["model_repository"]) / args["model_version"]
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        self.mode = settings["mode"]
        self.max_bytes = int(settings.get("max_image_bytes", MAX_IMAGE_BYTES))
        self.max_pixels = int(settings.get("max_image_pixels", MAX_IMAGE_PIXELS))
        if self.mode == "detect":
            from ..model import open_model

            source = folder / settings["model"]
            device = settings["device"]
            if device != "cpu":  # KIND_GPU: the GPU Triton gave this instance
                device = f"cuda:{args['model_instance_device_id']}"
            self.model = open_model(source if source.exists() else settings["model"], device=device,
                                    threads=int(settings.get("threads", 0)))
        elif self.mode in ("preprocess", "postprocess"):
            self.model = Model(MetadataOnly(ModelMetadata.from_props(settings["metadata"])))
        else:
            raise InputError(f"{folder / SETTINGS_FILE}: unknown mode {self.mode!r}")

    def _images(self, request: object) -> list[np.ndarray]:
        items = self.pb.get_input_tensor_by_name(request, IMAGE_INPUT).as_numpy().reshape(-1)
        images = []
        for index, item in enumerate(items):
            try:
                images.append(decode_image(bytes(item), self.max_bytes, self.max_pixels))
            except ImageRequestError as error:
                raise ImageRequestError(f"image {index} of the request: {error}") from None
        return images

    def _response(self, arrays: dict[str, np.ndarray]) -> object:
        return self.pb.InferenceResponse([self.pb.Tensor(name, array) for name, array in arrays.items()])

    def _decode_all(self, requests: list) -> tuple[list, list[np.ndarray], list[tuple[int, int]]]:
        """Responses so far (errors filled in), the good images in order, and (request, count) of each good request."""
        responses: list = [None] * len(requests)
        images: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []
        for position, request in enumerate(requests):
            try:
                decoded = self._images(request)
            except ImageRequestError as error:
                refused = self.pb.TritonError(str(error), self.pb.TritonError.INVALID_ARG)  # HTTP 400
                responses[position] = self.pb.InferenceResponse(error=refused)
                continue
            images.extend(decoded)
            owners.append((position, len(decoded)))
        return responses, images, owners

    def execute(self, requests: list) -> list:
        """Answer each request of a (dynamically batched) call."""
        if self.mode == "postprocess":
            return [self._postprocess(request) for request in requests]
        responses, images, owners = self._decode_all(requests)
        if not images:
            return responses
        if self.mode == "detect":
            rows = iter(detections_arrays([d]) for d in self.model.detect(images))
        else:
            prepared = self.model.prepare(images)
            sizes = np.asarray(prepared.original_sizes, dtype=np.int32)
            rows = iter({INPUT_NAME: prepared.images[i:i + 1], SIZE_TENSOR: sizes[i:i + 1]} for i in range(len(images)))
        for position, count in owners:
            parts = [next(rows) for _ in range(count)]
            responses[position] = self._response({name: np.concatenate([p[name] for p in parts]) for name in parts[0]})
        return responses

    def _postprocess(self, request: object) -> object:
        outputs = {name: self.pb.get_input_tensor_by_name(request, name).as_numpy() for name in OUTPUT_NAMES}
        sizes = self.pb.get_input_tensor_by_name(request, SIZE_TENSOR).as_numpy()
        prepared = Prepared(np.empty((len(sizes), 0), np.float32), [(int(h), int(w)) for h, w in sizes])
        return self._response(detections_arrays(self.model.finish(outputs, prepared)))
