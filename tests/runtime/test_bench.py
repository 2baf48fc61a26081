"""`detrt bench`: the JSON fields, the stage split, the histogram, and batch limits."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from detrt import runtime
from detrt.runtime.apps.bench import benchmark, latency_stats
from detrt.runtime.cli import main
from support.shipped import shipped_onnx


def test_latency_stats_are_percentiles() -> None:
    stats = latency_stats([float(v) for v in range(1, 101)])
    assert stats["min"] == 1 and stats["max"] == 100 and stats["mean"] == 50.5
    assert stats["p50"] == pytest.approx(50.5) and stats["p90"] == pytest.approx(90.1)
    assert stats["p99"] == pytest.approx(99.01)


def test_bench_writes_json_and_histogram(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["bench", str(shipped_onnx("portable")), "--batch", "2", "--iters", "4", "--warmup", "1",
                 "--out", str(tmp_path), "--threads", "2", "--json"])
    printed = json.loads(capsys.readouterr().out)
    assert code == 0
    written = json.loads((tmp_path / "bench.json").read_text())
    assert written["samples_ms"] == printed["samples_ms"]
    assert (written["backend"], written["batch_size"], written["iters"], written["warmup"]) == ("onnxruntime", 2, 4, 1)
    latency = written["latency_ms"]
    assert set(latency) == {"p50", "p90", "p99", "mean", "min", "max"}
    assert 0 < latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert set(written["stages_ms"]) == {"preprocess", "inference", "postprocess"}
    stage_sum = sum(stage["mean"] for stage in written["stages_ms"].values())
    assert stage_sum == pytest.approx(latency["mean"], rel=1e-3, abs=2e-3)
    assert written["throughput_images_per_s"] == pytest.approx(2 * 1000 / latency["mean"], rel=1e-2)
    assert len(written["samples_ms"]) == 4
    assert {"cpu", "cores", "onnxruntime", "torch", "date"} <= set(written["environment"])
    assert (tmp_path / "latency.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_batch_beyond_a_fixed_graph_is_refused_with_the_fix() -> None:
    model = runtime.open(shipped_onnx("plugin", 2))
    with pytest.raises(ValueError, match="--batch dynamic"):
        benchmark(model, batch=3, iters=1, warmup=0)
