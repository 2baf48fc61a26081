"""Annotated images: boxes, class names and scores drawn with OpenCV."""
from __future__ import annotations

import colorsys
from pathlib import Path

import cv2
import numpy as np

from detrt.detectors import Detections

from ..errors import DetrtRuntimeError


def class_colour(label: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class (golden-ratio hues)."""
    red, green, blue = colorsys.hsv_to_rgb((label * 0.618034) % 1.0, 0.85, 1.0)
    return int(red * 255), int(green * 255), int(blue * 255)


def draw_detections(image: np.ndarray, detections: Detections, caption: str | None = None) -> np.ndarray:
    """A copy of the RGB (H, W, 3) uint8 `image` with each detection's box and "name score" drawn."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(min(canvas.shape[:2]) / 300))
    scale = max(0.35, min(canvas.shape[:2]) / 900)
    for box, score, label, name in zip(detections.boxes.tolist(), detections.scores.tolist(),
                                       detections.labels.tolist(), detections.names()):
        colour = class_colour(int(label))
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        text = f"{name} {score:.2f}"
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
        top = max(0, y0 - height - baseline - 2)
        cv2.rectangle(canvas, (x0, top), (x0 + width + 2, top + height + baseline + 2), colour, -1)
        cv2.putText(canvas, text, (x0 + 1, top + height + 1), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    if caption:
        cv2.putText(canvas, caption, (4, canvas.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return canvas


def save_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an RGB image (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path} (unsupported suffix {path.suffix!r} or folder not writable)")
    return path


def check_display() -> None:
    """Fail early, with the fix, where OpenCV cannot open windows (headless build or no display)."""
    try:
        cv2.namedWindow("detrt", cv2.WINDOW_NORMAL)
    except cv2.error as error:
        raise DetrtRuntimeError("--show needs an OpenCV with a GUI and a display; this one cannot open windows "
                                      "(opencv-python-headless?): install opencv-python, or use --save DIR "
                                      f"instead ({str(error).splitlines()[0][:120]})") from None


def show(image: np.ndarray) -> bool:
    """Show an RGB image in the "detrt" window; False when the user pressed q or Esc."""
    cv2.imshow("detrt", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return (cv2.waitKey(1) & 0xFF) not in (ord("q"), 27)
