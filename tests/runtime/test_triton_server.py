"""A real Triton Inference Server (PyPI's nvidia-pytriton build) serving a `detrt triton --backend python`
repository of the shipped model, over HTTP and gRPC; no mocks. The graph served is the plugin export
(MSDA plugin nodes, fixed batch 2): inside the server they run on libdetrt_plugins through ONNX
Runtime on the CPU, and Triton's batches of up to 8 are split into calls of 2, as `runtime.open` does.

Needs the server environment (`python -m detrt.runtime.triton.server prepare`) and the `triton`
extra (tritonclient); skipped with that reason where either is missing. The server runs on
127.0.0.1 on free ports, its start is bounded, and it is ended by its process group id.
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import struct
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detrt import runtime
from detrt.detectors.data.shapes_dataset import render
from detrt.runtime.cli import main
from detrt.runtime.apps.sources import open_source
from detrt.runtime.triton.repository import RepositoryOptions, write_repository
from detrt.runtime.triton.server import ServerEnvironment, TritonServer
from support.shipped import shipped_onnx

MODEL = "shapes"
ENSEMBLE = "ensemble"
CONF = 0.05  # compare every detection that scores at least this (below, near-equal scores may swap order)
BOX_ATOL_PX = 1e-3  # same graph and code on both sides; only the batch composition differs (float32 GEMMs)
SCORE_ATOL = 1e-4

_ENVIRONMENT = ServerEnvironment()
if importlib.util.find_spec("tritonclient") is None:
    pytest.skip("tritonclient is not installed: pip install 'detrt[triton]'", allow_module_level=True)
if not _ENVIRONMENT.is_prepared():
    pytest.skip(f"no Triton server environment in {_ENVIRONMENT.home}: create it with "
                f"`{sys.executable} -m detrt.runtime.triton.server prepare`", allow_module_level=True)

from detrt.runtime.triton.client import TritonDetector, TritonRequestError  # noqa: E402 (after the skip)

pytestmark = pytest.mark.slow


def _graph() -> Path:
    return shipped_onnx("plugin", 2)  # shared with test_runtime_graphs (one export per test process)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201 (TritonServer)
    folder = tmp_path_factory.mktemp("triton")
    write_repository(_graph(), folder / "repository", RepositoryOptions(name=MODEL, max_batch=8))
    # the Python ends of an onnxruntime ensemble (its network needs a backend this server lacks)
    write_repository(shipped_onnx("portable"), folder / "ensemble", RepositoryOptions(name=ENSEMBLE, backend="onnxruntime"))
    for part in ("preprocess", "postprocess"):
        shutil.copytree(folder / "ensemble" / f"{ENSEMBLE}_{part}", folder / "repository" / f"{ENSEMBLE}_{part}")
    with TritonServer(folder / "repository", _ENVIRONMENT, log_path=folder / "tritonserver.log",
                      ready_timeout_s=180) as running:
        yield running


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 generated shapes images (their own mixed sizes) as PNG files."""
    folder = tmp_path_factory.mktemp("images")
    for index in range(8):
        picture = np.asarray(render(5, index)[0])
        cv2.imwrite(str(folder / f"shapes_{index}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return folder


def _assert_same(got: list, want: list) -> None:
    assert len(got) == len(want)
    for mine, theirs in zip(got, want):
        mine, theirs = mine.above(CONF), theirs.above(CONF)
        assert len(mine) == len(theirs) > 0
        assert mine.names() == theirs.names()
        torch.testing.assert_close(mine.scores, theirs.scores, atol=SCORE_ATOL, rtol=0)
        torch.testing.assert_close(mine.boxes, theirs.boxes, atol=BOX_ATOL_PX, rtol=0)


def test_http_and_grpc_detections_equal_detrt_run(server: TritonServer, image_folder: Path) -> None:
    with open_source(image_folder) as source:  # the frames `detrt run` reads
        frames = list(source)
    local = runtime.open(_graph())
    expected = local.detect([frame.image for frame in frames])
    files = [(image_folder / frame.name).read_bytes() for frame in frames]
    for url in (f"http://{server.http_url}", f"grpc://{server.grpc_url}"):
        detector = TritonDetector(url, MODEL)
        assert detector.class_names == local.class_names
        _assert_same(detector.detect_encoded(files), expected)  # one request of 8 images
        _assert_same([detector.detect(frame.image)[0] for frame in frames[:2]], expected[:2])  # arrays sent as PNG


def test_the_ensembles_python_ends_around_a_local_network(server: TritonServer, image_folder: Path) -> None:
    """An onnxruntime ensemble's pre- and post-processing models on the real server, with the network
    (which this server cannot load) run locally in between: together they equal `runtime.open`."""
    import tritonclient.grpc as grpc

    client = grpc.InferenceServerClient(server.grpc_url)
    with open_source(image_folder) as source:
        frames = list(source)[:3]
    files = np.array([(image_folder / frame.name).read_bytes() for frame in frames], dtype=np.object_)
    request = grpc.InferInput("image", [3, 1], "BYTES")
    request.set_data_from_numpy(files.reshape(-1, 1))
    prepared_remote = client.infer(f"{ENSEMBLE}_preprocess", [request])
    local = runtime.open(shipped_onnx("portable"))
    prepared = local.prepare([frame.image for frame in frames])
    np.testing.assert_allclose(prepared_remote.as_numpy("images"), prepared.images, rtol=0, atol=1e-3)  # 0..255
    sizes = prepared_remote.as_numpy("original_size")
    assert sizes.tolist() == [list(size) for size in prepared.original_sizes]
    raw = local.backend.infer(prepared_remote.as_numpy("images"))
    inputs = []
    for name, array in (*raw.items(), ("original_size", sizes)):
        inputs.append(grpc.InferInput(name, list(array.shape), {"float32": "FP32", "int64": "INT64",
                                                                "int32": "INT32"}[str(array.dtype)]))
        inputs[-1].set_data_from_numpy(array)
    finished = client.infer(f"{ENSEMBLE}_postprocess", inputs)
    expected = local.finish(raw, prepared)
    for index, want in enumerate(expected):
        np.testing.assert_allclose(finished.as_numpy("boxes")[index], want.boxes.numpy(), rtol=0, atol=BOX_ATOL_PX)
        np.testing.assert_allclose(finished.as_numpy("scores")[index], want.scores.numpy(), rtol=0, atol=SCORE_ATOL)
        assert finished.as_numpy("labels")[index].tolist() == want.labels.tolist()
        assert [name.decode() for name in finished.as_numpy("names")[index]] == want.names()


def test_detrt_run_with_triton_writes_what_the_local_run_writes(server: TritonServer, image_folder: Path,
                                                                tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    records = {}
    for label, model, extra in (("local", str(_graph()), []),
                                ("triton", MODEL, ["--triton", f"grpc://{server.grpc_url}"])):
        code = main(["run", model, "--source", str(image_folder), "--save", str(tmp_path / label), "--batch", "3",
                     "--conf", "0.3", "--json", *extra])
        summary = json.loads(capsys.readouterr().out)
        assert code == 0 and summary["frames"] == 8
        records[label] = [json.loads(line) for line in (tmp_path / label / "detections.jsonl").read_text().splitlines()]
    assert summary["model_backend"] == "triton (grpc)"
    for local, served in zip(records["local"], records["triton"]):
        assert [d["name"] for d in local["detections"]] == [d["name"] for d in served["detections"]]
        for mine, theirs in zip(local["detections"], served["detections"]):
            assert abs(mine["score"] - theirs["score"]) <= 2e-5  # written rounded to 5 decimals
            assert np.allclose(mine["box"], theirs["box"], atol=0.011)  # written rounded to 0.01 px


def test_sixteen_concurrent_requests_succeed_in_batched_executions(server: TritonServer, image_folder: Path) -> None:
    files = sorted(image_folder.glob("*.png"))
    detector = TritonDetector(f"http://{server.http_url}", MODEL)
    alone = {path.name: detector.detect_encoded([path.read_bytes()])[0] for path in files[:2]}
    before = {name: server.metric(name, MODEL) for name in ("nv_inference_request_success", "nv_inference_exec_count")}
    requests = [files[i % 2] for i in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(lambda path: detector.detect_encoded([path.read_bytes()])[0], requests))
    succeeded = server.metric("nv_inference_request_success", MODEL) - before["nv_inference_request_success"]
    executions = server.metric("nv_inference_exec_count", MODEL) - before["nv_inference_exec_count"]
    assert succeeded == 16
    assert 1 <= executions < 16, f"16 requests ran in {executions} executions: the dynamic batcher merged none"
    for path, result in zip(requests, results):
        _assert_same([result], [alone[path.name]])


def _png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims width x height pixels (its pixel data is one compressed row)."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    row = zlib.compress(bytes(1 + 3 * width))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", row) + chunk(b"IEND", b"")


def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server: TritonServer, image_folder: Path) -> None:
    import tritonclient.http as http
    from tritonclient.utils import InferenceServerException

    detector = TritonDetector(f"http://{server.http_url}", MODEL)
    good = sorted(image_folder.glob("*.png"))[0].read_bytes()
    cases = {b"not an image at all": "are not an image: send the bytes of a JPEG or PNG file",
             _png_claiming(8000, 6000): "8000x6000 pixels, over this model's limit of 40000000",
             _png_claiming(30000, 30000): "pixels, far over this model's limit",
             good[: len(good) // 2]: "could not be decoded",
             b"": "the image is empty"}
    for data, message in cases.items():
        with pytest.raises(TritonRequestError, match=message):
            detector.detect_encoded([data])
    with pytest.raises(TritonRequestError, match="image 1 of the request"):  # one bad image fails its request
        detector.detect_encoded([good, b"junk"])
    not_an_image = http.InferInput("image", [1, 1], "BYTES")
    not_an_image.set_data_from_numpy(np.array([[b"text"]], dtype=np.object_))
    with pytest.raises(InferenceServerException) as refused:
        http.InferenceServerClient(server.http_url).infer(MODEL, [not_an_image])
    assert refused.value.status() == "400"  # the client's fault (INVALID_ARG), not the server's
    wrong_type = http.InferInput("image", [1, 1], "FP32")
    wrong_type.set_data_from_numpy(np.zeros((1, 1), np.float32))
    with pytest.raises(InferenceServerException, match="data-type is .FP32., but model .shapes. expects .BYTES."):
        http.InferenceServerClient(server.http_url).infer(MODEL, [wrong_type])
    with pytest.raises(TritonRequestError, match=f"model 'nope' is not ready on .*it serves: .*{MODEL}"):
        TritonDetector(f"http://{server.http_url}", "nope")
    assert server.process is not None and server.process.poll() is None
    assert len(detector.detect_encoded([good])[0].above(0.5)) > 0  # still serving
