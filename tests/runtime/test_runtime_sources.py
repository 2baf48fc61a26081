"""Frame sources: images, directories, videos (with a corrupt frame) and cameras; skips and clear errors."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from detrt.runtime.errors import SourceError
from detrt.runtime.apps.sources import Frame, FrameSource, Skip, open_source
from support.media import write_video


def test_directory_skips_and_counts_undecodable_images(tmp_path: Path) -> None:
    for index in range(3):
        cv2.imwrite(str(tmp_path / f"{index}.png"), np.full((20, 30, 3), index * 50, np.uint8))
    (tmp_path / "1b-broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored: not an image suffix")
    with open_source(tmp_path) as source:
        frames = list(source)
    assert [frame.name for frame in frames] == ["0.png", "1.png", "2.png"]
    assert frames[1].image.shape == (20, 30, 3) and frames[1].image.dtype == np.uint8
    assert [skip.name for skip in source.skipped] == ["1b-broken.jpg"]
    assert "not a decodable image" in source.skipped[0].reason


def test_image_pixels_are_rgb(tmp_path: Path) -> None:
    bgr = np.zeros((8, 8, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV's order
    cv2.imwrite(str(tmp_path / "blue.png"), bgr)
    with open_source(tmp_path / "blue.png") as source:
        (frame,) = list(source)
    assert source.kind == "image" and frame.image[0, 0].tolist() == [0, 0, 255]


def test_video_with_a_corrupt_frame_skips_it_and_keeps_going(tmp_path: Path) -> None:
    with open_source(write_video(tmp_path / "clip.avi", 8, corrupt=3)) as source:
        frames = list(source)
    assert source.kind == "video" and source.fps == pytest.approx(10)
    assert len(frames) == 7 and [skip.name for skip in source.skipped] == ["clip_000003"]
    assert [frame.index for frame in frames] == [0, 1, 2, 4, 5, 6, 7]
    assert frames[-1].image.mean() > frames[0].image.mean()  # frames come in order


def test_missing_and_empty_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="camera index"):
        open_source(tmp_path / "absent.jpg")
    with pytest.raises(SourceError, match="no images"):
        open_source(tmp_path)
    (tmp_path / "fake.mp4").write_bytes(b"not a video at all")
    with pytest.raises(SourceError, match="cannot open video"):
        open_source(tmp_path / "fake.mp4")


def test_a_camera_that_does_not_exist_fails_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(SourceError, match="camera 97 could not be opened"):
        open_source("97")
    assert time.perf_counter() - start < 10


def test_a_stalled_source_is_an_error_not_a_hang() -> None:
    release = threading.Event()

    def reader() -> Iterator[Frame | Skip]:
        yield Frame(0, "first", np.zeros((4, 4, 3), np.uint8))
        release.wait(30)  # a camera that stops delivering

    source = FrameSource("camera", "test camera", reader, stall_timeout=0.5)
    frames = iter(source)
    assert next(frames).name == "first"
    start = time.perf_counter()
    with pytest.raises(SourceError, match="stalled"):
        next(frames)
    assert time.perf_counter() - start < 5
    release.set()
    source.close()


def test_decoder_errors_reach_the_consumer_with_the_source_named() -> None:
    def reader() -> Iterator[Frame | Skip]:
        yield Frame(0, "first", np.zeros((4, 4, 3), np.uint8))
        raise OSError("device unplugged")

    with FrameSource("camera", "test camera", reader) as source:
        with pytest.raises(SourceError, match="test camera: decoding failed: device unplugged"):
            list(source)
