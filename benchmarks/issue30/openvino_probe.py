#!/usr/bin/env python
"""Would OpenVINO's int8 CPU kernels beat ONNX Runtime where its int8 did not? (issue 30, probe)

Times LightTrack-Mobile's frame graph (fused, random weights, template cached) in ONNX Runtime float32
and int8 (the project's QDQ graph, calibrated on random crops: right for speed, not accuracy) and in
OpenVINO float32 and on the same int8 graph, 1 thread each, ROUNDS interleaved rounds of 30 runs
(medians), and prints each backend's speed-up over ONNX Runtime float32 per round. OpenVINO is not a
project dependency: `pip install openvino` first (measured with 2026.4.1).

  python benchmarks/issue30/openvino_probe.py [ROUNDS]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import onnx
import openvino as ov
from mobile_graphs import mobile_frame_graphs

from lighttrack_nas.deploy.onnx import create_session


def main(rounds: int = 7, runs: int = 30) -> None:
    frame, frame8, feed = mobile_frame_graphs()
    core, runners = ov.Core(), {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, graph in (("f32", frame), ("int8", frame8)):
            path = str(Path(tmp) / f"{name}.onnx")
            onnx.save(graph, path)
            ort_session = create_session(path, threads=1)
            runners[f"onnxruntime-{name}"] = lambda s=ort_session: s.run(None, feed)
            compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_NUM_THREADS": 1,
                                                                         "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": 1})
            runners[f"openvino-{name}"] = lambda r=compiled.create_infer_request(): r.infer(feed)
    times: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(rounds):
        for name, run in runners.items():
            for _ in range(3):
                run()
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                run()
                samples.append(time.perf_counter() - start)
            times[name].append(statistics.median(samples) * 1e3)
    base = times["onnxruntime-f32"]
    for name, values in times.items():
        ratios = [b / v for b, v in zip(base, values)]
        print(f"{name}: {statistics.median(values):.2f} ms (rounds {', '.join(f'{v:.1f}' for v in values)}); "
              f"ONNX Runtime float32 / this: median {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
