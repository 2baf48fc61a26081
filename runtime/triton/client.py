"""A client for detectors served from a `detrt triton` repository: images in, `Detections` out.

    from detrt.runtime.triton.client import TritonDetector
    detector = TritonDetector("http://127.0.0.1:8000", "shapes-deformable-detr")  # or grpc://host:8001
    detections = detector.detect([image])

Images go out as PNG (lossless, so the server sees the very pixels given here); `detect_encoded`
sends JPEG/PNG file bytes as they are. One network client per thread, so one `TritonDetector`
can be shared by threads that send requests concurrently.
"""
from __future__ import annotations

import json
import threading
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from detrt.detectors import Detections, InputError, as_image_tensor

from ..errors import BackendUnavailableError, DetrtRuntimeError

IMAGE_INPUT = "image"
RESULT_NAMES = ("boxes", "scores", "labels")


class TritonRequestError(DetrtRuntimeError):
    """The Triton server refused a request or could not be reached; the message is the server's."""


def parse_url(url: str) -> tuple[str, str]:
    """("http" or "grpc", "host:port") from http://host:port, grpc://host:port or host:port (HTTP)."""
    for scheme in ("http", "grpc"):
        if url.startswith(f"{scheme}://"):
            return scheme, url[len(scheme) + 3:].rstrip("/")
    if "://" in url:
        raise InputError(f"Triton URL {url!r}: use http://HOST:PORT (default port 8000) or grpc://HOST:PORT (8001)")
    return "http", url.rstrip("/")


def encode_png(image: object) -> bytes:
    """An RGB image (array, tensor or PIL image) as PNG bytes."""
    pixels = as_image_tensor(image).permute(1, 2, 0).to(torch.uint8).numpy()
    ok, data = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(pixels), cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError("OpenCV could not encode the image as PNG")
    return data.tobytes()


def _client_module(protocol: str):  # noqa: ANN202 (tritonclient.http or tritonclient.grpc)
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError as error:
        raise BackendUnavailableError(f"the Triton client is not installed ({error}); install it with "
                                      "`pip install 'detrt[triton]'`") from None
    return module


class TritonDetector:
    """A detector on a Triton server; `detect` returns one `Detections` per image, like `Model.detect`."""

    def __init__(self, url: str, model_name: str, timeout_s: float = 60.0) -> None:
        self.url, self.model_name, self.timeout_s = url, model_name, timeout_s
        self.protocol, self.address = parse_url(url)
        self.module = _client_module(self.protocol)
        self._local = threading.local()
        config = self._call(self._config)
        names = config.get("parameters", {}).get("class_names", {}).get("string_value")
        if names is None:
            raise TritonRequestError(f"model {model_name!r} on {url} has no class_names parameter: serve a repository "
                                     "written by `detrt triton`")
        self.class_names: list[str] = json.loads(names)

    def _client(self) -> object:
        client = getattr(self._local, "client", None)
        if client is None:
            if self.protocol == "grpc":
                client = self.module.InferenceServerClient(self.address)
            else:
                client = self.module.InferenceServerClient(self.address, connection_timeout=self.timeout_s,
                                                           network_timeout=self.timeout_s)
            self._local.client = client
        return client

    def _config(self) -> dict:
        client = self._client()
        if not client.is_model_ready(self.model_name):
            models = [entry.get("name") for entry in self._index()]
            raise TritonRequestError(f"model {self.model_name!r} is not ready on {self.url}; it serves: {models}")
        if self.protocol == "grpc":
            return client.get_model_config(self.model_name, as_json=True)["config"]
        return client.get_model_config(self.model_name)

    def _index(self) -> list[dict]:
        index = self._client().get_model_repository_index(**({"as_json": True} if self.protocol == "grpc" else {}))
        return index.get("models", []) if isinstance(index, dict) else index

    def _call(self, function, *args: object) -> object:  # noqa: ANN001
        from tritonclient.utils import InferenceServerException

        try:
            return function(*args)
        except InferenceServerException as error:
            raise TritonRequestError(f"Triton {self.url} model {self.model_name!r}: {error.message()}") from None
        except (ConnectionError, OSError) as error:
            raise TritonRequestError(f"cannot reach the Triton server at {self.url} ({error}); is it running?") from None

    def _infer(self, encoded: list[bytes]) -> object:
        request = self.module.InferInput(IMAGE_INPUT, [len(encoded), 1], "BYTES")
        request.set_data_from_numpy(np.array(encoded, dtype=np.object_).reshape(-1, 1))
        outputs = [self.module.InferRequestedOutput(name) for name in RESULT_NAMES]
        if self.protocol == "grpc":
            return self._client().infer(self.model_name, [request], outputs=outputs, client_timeout=self.timeout_s)
        return self._client().infer(self.model_name, [request], outputs=outputs)

    def detect_encoded(self, encoded: Sequence[bytes], conf: float = 0.0) -> list[Detections]:
        """Detect in JPEG/PNG file bytes (one request, one batch row per image)."""
        if not encoded:
            raise InputError("no images to detect in")
        result = self._call(self._infer, list(encoded))
        boxes, scores, labels = (result.as_numpy(name) for name in RESULT_NAMES)
        found = [Detections(torch.from_numpy(boxes[i].copy()), torch.from_numpy(scores[i].copy()),
                            torch.from_numpy(labels[i].astype(np.int64)), self.class_names) for i in range(len(encoded))]
        return [detections.above(conf) if conf > 0 else detections for detections in found]

    def detect(self, images: Sequence[object] | object, conf: float = 0.0) -> list[Detections]:
        """Detect in RGB images ((H, W, 3) uint8 arrays, (3, H, W) tensors or PIL images), sent as PNG."""
        items = images if isinstance(images, (list, tuple)) else [images]
        return self.detect_encoded([encode_png(image) for image in items], conf)

    __call__ = detect

    def describe(self) -> dict:
        """Where the model runs, for summaries."""
        return {"backend": f"triton ({self.protocol})", "device": self.url, "name": self.model_name}
