"""The shipped model served by Triton (`detrt triton --backend python`) at concurrency 1, 4 and 16,
beside `detrt bench` of the same model in the same run, on the same machine.

The model is exported once (portable graph, dynamic batch, ONNX Runtime on the CPU). The real
tritonserver (PyPI's nvidia-pytriton build, see `detrt.runtime.triton.server`) serves a repository
of that graph on 127.0.0.1. `detrt bench` (batch 1, in this process, `runtime.bench.benchmark`)
times the same graph locally while the server idles, before and after the Triton load, so a
change of the machine's load between the two shows. The load is a bounded closed loop: `concurrency` threads each send one-image requests (PNG of a generated
shapes image, as files arrive) back to back, `--requests-per-thread` each after a warm-up. Latency is
per request, client side (encode excluded: the PNG bytes are made once); throughput is requests
over wall time. The server's /metrics give the average batch the dynamic batcher formed.

    python3 -m detrt.runtime.triton.server prepare      # once
    python3 benchmarks/triton_serving.py [--requests-per-thread 8] [--bench-iters 40] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import cv2

from detrt import runtime
from detrt.detectors.zoo import load_zoo
from detrt.export import ExportOptions, export_onnx
from detrt.runtime.apps.bench import bench_images, benchmark, environment, latency_stats
from detrt.runtime.triton.client import TritonDetector
from detrt.runtime.triton.repository import RepositoryOptions, write_repository
from detrt.runtime.triton.server import TritonServer

ZOO = "shapes-deformable-detr"
NAME = "shapes"


def closed_loop(detector: TritonDetector, payloads: list[bytes], concurrency: int, per_thread: int) -> dict:
    """`concurrency` threads sending `per_thread` one-image requests each, back to back."""
    samples: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        mine = []
        try:
            for index in range(per_thread):
                start = time.perf_counter()
                detector.detect_encoded([payloads[(offset + index) % len(payloads)]])
                mine.append((time.perf_counter() - start) * 1000.0)
        except BaseException as error:  # reported after the join
            errors.append(error)
        with lock:
            samples.extend(mine)

    threads = [threading.Thread(target=worker, args=(offset,)) for offset in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    return {"concurrency": concurrency, "requests": len(samples), "seconds": round(wall, 3),
            "throughput_images_per_s": round(len(samples) / wall, 2), "latency_ms": latency_stats(samples)}


def run(requests_per_thread: int, bench_iters: int, threads: int) -> dict:
    """Export, bench locally, serve, load at 1/4/16; returns every number."""
    folder = Path(tempfile.mkdtemp(prefix="detrt-triton-bench-"))
    graph = folder / "shapes.onnx"
    export_onnx(load_zoo(ZOO), graph, ExportOptions(msda="portable", batch=None))
    load_before = os.getloadavg()
    write_repository(graph, folder / "repository", RepositoryOptions(name=NAME, max_batch=8, threads=threads))
    payloads = [cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))[1].tobytes() for image in bench_images(8)]
    model = runtime.open(graph, threads=threads)
    rows, local = [], []
    with TritonServer(folder / "repository", log_path=folder / "tritonserver.log") as server:
        local.append(benchmark(model, batch=1, iters=bench_iters, warmup=5))  # the server idles meanwhile
        detector = TritonDetector(f"http://{server.http_url}", NAME)
        for payload in payloads[:3]:
            detector.detect_encoded([payload])  # warm-up
        for concurrency in (1, 4, 16):
            executions = server.metric("nv_inference_exec_count", NAME)
            inferences = server.metric("nv_inference_count", NAME)
            row = closed_loop(detector, payloads, concurrency, requests_per_thread)
            row["average_batch"] = round((server.metric("nv_inference_count", NAME) - inferences)
                                         / max(server.metric("nv_inference_exec_count", NAME) - executions, 1), 2)
            rows.append(row)
        local.append(benchmark(model, batch=1, iters=bench_iters, warmup=5))  # again: the load may have changed
    keys = ("backend", "device", "batch_size", "iters", "latency_ms", "throughput_images_per_s")
    return {"detrt_bench": [{key: result[key] for key in keys} for result in local], "triton": rows, "load_average_before": [round(v, 2) for v in load_before],
            "load_average_after": [round(v, 2) for v in os.getloadavg()], "environment": environment()}


def table(result: dict) -> str:
    """The markdown table of docs/triton.md."""
    lines = ["| path | concurrency | requests | throughput (img/s) | p50 (ms) | p99 (ms) | avg batch |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for when, bench in zip(("before", "after"), result["detrt_bench"]):
        lines.append(f"| `detrt bench` (in process, batch 1), {when} the load | 1 | {bench['iters']} | "
                     f"{bench['throughput_images_per_s']} | {bench['latency_ms']['p50']} | {bench['latency_ms']['p99']} | 1 |")
    for row in result["triton"]:
        lines.append(f"| Triton HTTP, python backend | {row['concurrency']} | {row['requests']} | "
                     f"{row['throughput_images_per_s']} | {row['latency_ms']['p50']} | {row['latency_ms']['p99']} | "
                     f"{row['average_batch']} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests-per-thread", type=int, default=8)
    parser.add_argument("--bench-iters", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads, both sides (0: its default)")
    parser.add_argument("--json", help="also write every number to this file")
    args = parser.parse_args()
    result = run(args.requests_per_thread, args.bench_iters, args.threads)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"load average before {result['load_average_before']}, after {result['load_average_after']}; "
          f"{result['environment']['cpu']}, {result['environment']['cores']} cores")


if __name__ == "__main__":
    main()
