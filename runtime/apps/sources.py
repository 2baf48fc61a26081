"""Frame sources: an image, a directory of images, a video file or a camera, decoded in a background
thread into a bounded queue. A frame that cannot be decoded is skipped and counted, never fatal;
a source that cannot be opened, or that stalls, is a clear error, never a hang.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from detrt.calibrate import IMAGE_SUFFIXES
from detrt.detectors import ImageReadError, LimitError, MissingFileError, read_image

from ..errors import SourceError

MAX_CAMERA_INDEX = 9999  # larger indices name no device (and overflow OpenCV's int)
MAX_CONSECUTIVE_FAILURES = 30  # failed reads in a row that end a video or camera stream
STALL_TIMEOUT_S = 10.0  # no frame for this long: the source has stalled


@dataclass
class Frame:
    """One decoded frame: its position in the source, a name for outputs, RGB (H, W, 3) uint8 pixels."""

    index: int
    name: str
    image: np.ndarray


@dataclass
class Skip:
    """A frame that could not be decoded, and why."""

    name: str
    reason: str


@dataclass
class _Failed:
    error: BaseException


_END = object()


@dataclass
class FrameSource:
    """Iterate to get `Frame`s; skipped frames are collected in `skipped`. Use as a context manager."""

    kind: str  # image | directory | video | camera
    description: str
    reader: Callable[[], Iterator[Frame | Skip]]
    fps: float | None = None  # of a video or camera, when it says
    queue_size: int = 8
    stall_timeout: float = STALL_TIMEOUT_S
    skipped: list[Skip] = field(default_factory=list)
    _queue: queue.Queue = field(init=False, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._queue = queue.Queue(maxsize=self.queue_size)

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _pump(self) -> None:
        items = self.reader()
        try:
            for item in items:
                if not self._put(item):
                    return
        except Exception as error:  # handed to the consumer, which raises it with the source named
            self._put(_Failed(error))
        finally:
            items.close()  # type: ignore[attr-defined]
            self._put(_END)

    def __iter__(self) -> Iterator[Frame]:
        if self._thread is None:
            self._thread = threading.Thread(target=self._pump, name=f"detrt-decode-{self.kind}", daemon=True)
            self._thread.start()
        while True:
            try:
                item = self._queue.get(timeout=self.stall_timeout)
            except queue.Empty:
                raise SourceError(f"{self.description}: no frame for {self.stall_timeout:.0f} s, the source has "
                                  "stalled (camera disconnected or in use?)") from None
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise SourceError(f"{self.description}: decoding failed: {item.error}") from item.error
            if isinstance(item, Skip):
                self.skipped.append(item)
                continue
            yield item

    def close(self) -> None:
        """Stop the decoding thread (it releases the file or camera)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FrameSource:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _read_images(paths: list[Path]) -> Iterator[Frame | Skip]:
    for index, path in enumerate(paths):
        try:
            image = read_image(path)
        except ImageReadError:
            yield Skip(path.name, "not a decodable image (corrupt, empty or unsupported format)")
            continue
        except LimitError as error:
            yield Skip(path.name, str(error))
            continue
        yield Frame(index, path.name, image)


def _read_capture(capture: cv2.VideoCapture, prefix: str) -> Iterator[Frame | Skip]:
    """Frames of an opened capture. A failed read followed by good ones is a skipped frame; failures
    that run to the end of the stream are its end."""
    index, pending = 0, []
    try:
        while len(pending) < MAX_CONSECUTIVE_FAILURES:
            ok, image = capture.read()
            name = f"{prefix}_{index:06d}"
            index += 1
            if not ok or image is None or image.ndim != 3:
                pending.append(Skip(name, "frame could not be decoded"))
                continue
            yield from pending
            pending = []
            yield Frame(index - 1, name, np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)))
    finally:
        capture.release()


def _image_source(path: Path) -> FrameSource:
    return FrameSource("image", f"image {path}", lambda: _read_images([path]))


def _directory_source(path: Path) -> FrameSource:
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in directory {path}")
    return FrameSource("directory", f"directory {path} ({len(files)} images)", lambda: _read_images(files))


def _video_source(path: Path) -> FrameSource:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise SourceError(f"cannot open video {path}: not a video file OpenCV (FFmpeg) can read")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    return FrameSource("video", f"video {path}", lambda: _read_capture(capture, path.stem), fps=fps)


def _camera_source(index: int) -> FrameSource:
    if index > MAX_CAMERA_INDEX:
        raise SourceError(f"camera index {index} is out of range 0..{MAX_CAMERA_INDEX}; list the cameras with "
                          "`ls /dev/video*` (Linux) and pass an index that exists")
    try:
        capture = cv2.VideoCapture(index)
    except cv2.error as error:
        raise SourceError(f"camera {index} could not be opened ({error})") from None
    if not capture.isOpened():
        raise SourceError(f"camera {index} could not be opened (no such device, in use, or no permission); "
                          "list the cameras with `ls /dev/video*` (Linux) and pass an index that exists")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    return FrameSource("camera", f"camera {index}", lambda: _read_capture(capture, f"camera{index}"), fps=fps)


def open_source(spec: str | Path) -> FrameSource:
    """An image file, a directory of images, a video file, or a camera index ("0")."""
    path = Path(spec)
    if path.is_dir():
        return _directory_source(path)
    if path.is_file():
        return _image_source(path) if path.suffix.lower() in IMAGE_SUFFIXES else _video_source(path)
    if str(spec).isdigit():
        return _camera_source(int(spec))
    raise MissingFileError(f"source {spec} does not exist; give an image, a directory of images, a video file "
                            "or a camera index")
