"""Media files the tests write: videos with an optional corrupt frame."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: int, corrupt: int | None = None, size: tuple[int, int] = (96, 64)) -> Path:
    """An MJPG AVI of numbered grey frames; with `corrupt`, that frame's JPEG data is zeroed past its headers."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for index in range(frames):
        frame = np.full((size[1], size[0], 3), 20 * index, np.uint8)
        cv2.putText(frame, str(index), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    if corrupt is not None:
        data = bytearray(path.read_bytes())
        starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]  # JPEG SOI markers
        assert len(starts) == frames
        begin, end = starts[corrupt] + 200, starts[corrupt + 1] - 8
        data[begin:end] = bytes(end - begin)
        path.write_bytes(bytes(data))
    return path
