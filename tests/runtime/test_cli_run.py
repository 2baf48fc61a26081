"""`detrt run` on images, a directory and a video, with the ONNX Runtime backend; bad input handled."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from detrt import runtime
from detrt.runtime.cli import main
from support.shipped import images, shipped_onnx
from support.media import write_video


def _run(capsys: pytest.CaptureFixture, *args: str) -> tuple[int, dict | None, str]:
    code = main(["run", str(shipped_onnx("portable")), *args, "--json"])
    captured = capsys.readouterr()
    return code, json.loads(captured.out) if code == 0 else None, captured.err


def _save_images(folder: Path, count: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, picture in enumerate(images(count, seed=21)):
        paths.append(folder / f"shapes_{index}.png")
        cv2.imwrite(str(paths[-1]), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    return paths


def test_run_on_one_image_saves_it_annotated_with_the_models_detections(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (image,) = _save_images(tmp_path / "in", 1)
    code, summary, _ = _run(capsys, "--source", str(image), "--save", str(tmp_path / "out"), "--conf", "0.4")
    assert code == 0 and summary["frames"] == 1 and summary["skipped"] == 0
    assert summary["model_backend"] == "onnxruntime"
    annotated = cv2.imread(str(tmp_path / "out" / image.name))
    assert annotated is not None and annotated.shape == cv2.imread(str(image)).shape
    assert (annotated != cv2.imread(str(image))).any()  # boxes were drawn
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "detections.jsonl").read_text().splitlines()]
    expected = runtime.open(shipped_onnx("portable")).detect(images(1, seed=21), conf=0.4)[0]
    assert [d["name"] for d in record["detections"]] == expected.names()
    assert summary["detections"] == len(expected) > 0


def test_run_on_a_directory_in_batches_counts_the_bad_image(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _save_images(tmp_path / "in", 3)
    (tmp_path / "in" / "shapes_1x.png").write_bytes(b"\x89PNG truncated")
    code, summary, err = _run(capsys, "--source", str(tmp_path / "in"), "--batch", "2", "--save", str(tmp_path / "out"))
    assert code == 0 and (summary["frames"], summary["skipped"]) == (3, 1)
    assert "skipped shapes_1x.png: not a decodable image" in err
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["shapes_0.png", "shapes_1.png", "shapes_2.png"]


def test_run_on_a_video_with_a_corrupt_frame(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = write_video(tmp_path / "clip.avi", 6, corrupt=2, size=(128, 96))
    code, summary, err = _run(capsys, "--source", str(video), "--batch", "3", "--save", str(tmp_path / "out"))
    assert code == 0 and (summary["frames"], summary["skipped"]) == (5, 1)
    assert "skipped clip_000002: frame could not be decoded" in err
    assert summary["fps"] > 0
    written = cv2.VideoCapture(str(tmp_path / "out" / "video.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert (int(written.get(cv2.CAP_PROP_FRAME_WIDTH)), int(written.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (128, 96)
    lines = (tmp_path / "out" / "detections.jsonl").read_text().splitlines()
    assert [json.loads(line)["index"] for line in lines] == [0, 1, 3, 4, 5]


@pytest.mark.parametrize("source, message", [
    ("absent.png", "does not exist"),
    ("97", "camera 97 could not be opened"),
    ("broken.png", "no frame could be read"),
])
def test_bad_sources_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], source: str, message: str) -> None:
    (tmp_path / "broken.png").write_bytes(b"not an image")
    target = source if source.isdigit() else str(tmp_path / source)
    code, _, err = _run(capsys, "--source", target)
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("detrt run: error:")]
    assert len(lines) == 1 and message in lines[0]
    assert "Traceback" not in err


def test_show_without_a_display_says_what_to_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        cv2.namedWindow("probe")
        pytest.skip("this OpenCV can open windows")
    except cv2.error:
        pass
    (image,) = _save_images(tmp_path, 1)
    code, _, err = _run(capsys, "--source", str(image), "--show")
    assert code == 2 and "--save DIR instead" in err
