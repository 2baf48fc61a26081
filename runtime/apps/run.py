"""The detection loop of `detrt run`: frames in batches through a `Model`, annotated, saved, shown.

FPS is end to end (decoding waits included) and logged about once a second; skipped frames are
logged as they happen and counted in the summary.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
from detrt.detectors import Detections, InputError

from ..errors import SourceError
from ..model import Model
from . import drawing
from .sources import Frame, FrameSource

VIDEO_FOURCC = "mp4v"


def batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """Consecutive lists of up to `size` frames."""
    chunk: list[Frame] = []
    for frame in frames:
        chunk.append(frame)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def detections_record(frame: Frame, detections: Detections) -> dict:
    """One line of detections.jsonl."""
    return {"frame": frame.name, "index": frame.index, "height": int(frame.image.shape[0]),
            "width": int(frame.image.shape[1]),
            "detections": [{"label": int(label), "name": name, "score": round(float(score), 5),
                            "box": [round(float(v), 2) for v in box]}
                           for box, score, label, name in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                                              detections.labels.tolist(), detections.names())]}


class _Outputs:
    """Where annotated frames go: image files, or one video for a video/camera source; plus JSON lines."""

    def __init__(self, save_dir: Path | None, source: FrameSource) -> None:
        self.save_dir, self.source, self.video = save_dir, source, None
        self.log = None
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)
            self.log = (save_dir / "detections.jsonl").open("w", buffering=1)  # whole lines, as they come

    def write(self, frame: Frame, detections: Detections, annotated: object) -> None:
        if self.save_dir is None:
            return
        self.log.write(json.dumps(detections_record(frame, detections), allow_nan=False) + "\n")  # type: ignore[union-attr]
        if self.source.kind in ("image", "directory"):
            drawing.save_image(self.save_dir / frame.name, annotated)  # type: ignore[arg-type]
            return
        if self.video is None:
            height, width = frame.image.shape[:2]
            path = self.save_dir / f"{self.source.kind}.mp4"
            self.video = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.source.fps or 30.0,
                                         (width, height))
            if not self.video.isOpened():
                raise OSError(f"cannot write the annotated video {path} (codec {VIDEO_FOURCC} unavailable?)")
        self.video.write(cv2.cvtColor(annotated, cv2.COLOR_RGB2BGR))  # type: ignore[arg-type]

    def close(self) -> None:
        if self.video is not None:
            self.video.release()
        if self.log is not None:
            self.log.close()


def run_source(model: Model, source: FrameSource, conf: float = 0.5, batch: int = 1, save_dir: str | Path | None = None,
               show: bool = False, progress: Callable[[str], None] = print, log_every_s: float = 1.0) -> dict:
    """Detect in every frame of `source`; returns a summary (frames, skipped, FPS, detections, outputs)."""
    if batch < 1:
        raise InputError(f"--batch must be at least 1, got {batch}")
    if show:
        drawing.check_display()
    outputs = _Outputs(Path(save_dir) if save_dir is not None else None, source)
    frames = detections_total = reported_skips = 0
    start = last_log = time.perf_counter()
    fps = 0.0
    try:
        for chunk in batches(iter(source), batch):
            results = model.detect([frame.image for frame in chunk], conf=conf)
            frames += len(chunk)
            now = time.perf_counter()
            fps = frames / max(now - start, 1e-9)
            for skip in source.skipped[reported_skips:]:
                progress(f"skipped {skip.name}: {skip.reason}")
            reported_skips = len(source.skipped)
            for frame, detections in zip(chunk, results):
                detections_total += len(detections)
                if outputs.save_dir is not None or show:
                    annotated = drawing.draw_detections(frame.image, detections, caption=f"{fps:.1f} FPS")
                    outputs.write(frame, detections, annotated)
                    if show and not drawing.show(annotated):
                        raise KeyboardInterrupt
            if now - last_log >= log_every_s:
                progress(f"{frames} frames, {fps:.1f} FPS, {len(source.skipped)} skipped")
                last_log = now
    except KeyboardInterrupt:
        progress("stopped by the user")
    finally:
        source.close()
        outputs.close()
    for skip in source.skipped[reported_skips:]:
        progress(f"skipped {skip.name}: {skip.reason}")
    if frames == 0:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in source.skipped[:3]) or "it is empty"
        raise SourceError(f"no frame could be read from {source.description} ({reasons})")
    elapsed = time.perf_counter() - start
    return {"source": source.description, "frames": frames, "skipped": len(source.skipped),
            "detections": detections_total, "seconds": round(elapsed, 3), "fps": round(frames / elapsed, 2),
            **{f"model_{k}": v for k, v in model.describe().items()},
            "saved": str(save_dir) if save_dir is not None else None}
