#!/usr/bin/env python
"""Inference speed, side by side in one run: network time per frame for each backend and form, its
ratio to the compute bound measured in the same process, whole-tracker fps and peak memory.

Backends: torch-train (the extracted subnet as trained), torch-fused (lighttrack_nas.deploy.fuse),
onnxruntime (the fused form exported to ONNX, graph optimisation level --ort-level) and
onnxruntime-int8 (that export with the per-frame graph quantised to int8, lighttrack_nas.deploy.quantize;
calibrated on random crops, which sets its speed but not its accuracy: the weights are random too).
Every measurement runs in a fresh process (so peak memory is its own) with the thread count fixed
for PyTorch, ONNX Runtime and OpenCV:
  - compute bound = MACs per frame (fvcore) / sgemm rate of a 1024^3 float32 matmul measured in
    that process with the same thread count;
  - network = median time of track(x) with the template cached (warm-up, then >= --min-run-time s);
  - tracker fps = 1 / median time of Tracker.update on --frames synthetic 480x640 frames
    (crop + network + post-processing), with the crop/pre-processing and post-processing
    milliseconds per frame from the tracker's own timing breakdown;
  - peak memory = the process's peak resident set size while measuring (the model already built),
    and in brackets its excess over the resident size before the model was loaded (same imports
    for every backend: torch, onnxruntime, OpenCV).
Each figure is the median over --rounds rounds (rounds interleave all configurations). Targets
(issue 8, lighttrack-mobile): network <= 1.3x the bound at 1 thread, <= 8 ms at 2 threads,
tracker >= 55 fps at 1 thread; a missed target prints a per-op profile of that backend. The int8
speed-up over onnxruntime (the median of the per-round ratios) is printed for every model and thread
count (issue 30's target: >= 1.6x for lighttrack-mobile at 1 thread, tracker >= 60 fps).

A --config SPACE:ARCH may end in :TxS to track at other crops than the space's (the tiny preset
tracks at 80x192).

example:
  python benchmarks/inference.py --rounds 3 --json runs/bench_inference.json
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lighttrack_nas.cli import run_cli
from lighttrack_nas.io import write_json

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("torch-train", "torch-fused", "onnxruntime", "onnxruntime-int8")
DEFAULT_CONFIGS = [f"{ROOT / 'search_spaces' / 'lighttrack.yaml'}:lighttrack-mobile",
                   f"{ROOT / 'search_spaces' / 'lighttrack_tiny.yaml'}:lighttrack-mobile:80x192"]
TARGETS = {"ratio_1": 1.3, "ms_2": 8.0, "fps_1": 55.0}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=None, metavar="SPACE:ARCH[:TxS]",
                   help="search-space YAML and architecture (preset or string), optionally the template and search "
                        "crop sizes, repeatable (default: lighttrack-mobile in lighttrack.yaml, and in "
                        "lighttrack_tiny.yaml at 80x192)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default: 1 2)")
    p.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS,
                   help="backends and forms to time (default: all)")
    p.add_argument("--ort-level", default="all", choices=("disable", "basic", "extended", "all"),
                   help="ONNX Runtime graph optimisation level (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="rounds; figures are medians over rounds (default: %(default)s)")
    p.add_argument("--min-run-time", type=float, default=1.0,
                   help="seconds of timed network runs per measurement after warm-up (default: %(default)s)")
    p.add_argument("--frames", type=int, default=100, help="tracker frames per measurement (default: %(default)s)")
    p.add_argument("--profile", default="missed", choices=("missed", "always", "never"),
                   help="per-op profiles: for backends missing a lighttrack-mobile target, for all, or none "
                        "(default: %(default)s)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write all figures as JSON")
    args = p.parse_args()
    if min(args.threads) < 1 or args.rounds < 1 or args.frames < 5 or args.min_run_time <= 0:
        p.error("--threads and --rounds must be >= 1, --frames >= 5, --min-run-time > 0")
    args.config = args.config or DEFAULT_CONFIGS
    for config in args.config:
        if ":" not in config:
            p.error(f"--config {config!r}: expected SPACE:ARCH[:TxS]")
    return args


def _parse_config(config: str) -> tuple[str, str, tuple[int, int] | None]:
    """``SPACE:ARCH[:TxS]`` -> (space, arch, crops or None); the architecture string may hold colons."""
    space, _, arch = config.partition(":")
    head, _, last = arch.rpartition(":")
    sizes = last.split("x")
    if head and len(sizes) == 2 and all(v.isdigit() for v in sizes):
        return space, head, (int(sizes[0]), int(sizes[1]))
    return space, arch, None


def _subnet(space: str, arch: str, crops: tuple[int, int] | None) -> torch.nn.Module:
    """The subnet with seeded random weights, at ``crops`` (template, search) when given."""
    from lighttrack_nas.models import build_subnet, load_space

    loaded = load_space(space)
    if crops:
        loaded.settings.update(template_size=crops[0], search_size=crops[1])
    torch.manual_seed(0)
    return build_subnet(loaded, arch).eval()


def _peak_rss_reset() -> None:
    """Reset this process's peak resident set size (Linux: ``5 > /proc/self/clear_refs``)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _status_mib(field: str) -> float | None:
    """``VmRSS`` (resident) or ``VmHWM`` (peak resident) of this process in MiB (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _frames(count: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Synthetic 480x640 frames with a textured 60x80 target drifting right and down."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    target = rng.integers(0, 256, (80, 60, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        x, y = 200 + (2 * i) % 300, 150 + i % 200
        frame = background.copy()
        frame[y:y + 80, x:x + 60] = target
        frames.append(frame)
    return frames, np.array([200.0, 150.0, 60.0, 80.0])


def _load(task: dict[str, Any], threads: int) -> Any:
    from lighttrack_nas.deploy import fuse
    from lighttrack_nas.deploy.onnx import OnnxTrackingModel

    if task["backend"].startswith("onnxruntime"):
        return OnnxTrackingModel.load(task["onnx"][task["backend"]], threads, task["level"])
    model = _subnet(task["space"], task["arch"], task["crops"])
    return model if task["backend"] == "torch-train" else fuse(model)


def measure(task: dict[str, Any]) -> dict[str, Any]:
    """One configuration in this (fresh) process: sgemm rate, network time, tracker fps, peak RSS
    (and its excess over the process's resident size before the model was loaded)."""
    import cv2

    import lighttrack_nas.deploy.onnx  # noqa: F401  (every backend pays the same imports)
    from lighttrack_nas.cost.latency import network_latency, time_call
    from lighttrack_nas.tracker import Tracker

    threads = task["threads"]
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
    before = _status_mib("VmRSS")
    model = _load(task, threads)
    frames, box = _frames(task["frames"] + 1)
    _peak_rss_reset()
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    sgemm = 1024 ** 3 / time_call(lambda: a @ b, threads, 0.5).median
    network = network_latency(model, threads, task["min_run_time"]).median
    tracker = Tracker(model)
    tracker.init(frames[0], box)
    times = []
    for frame in frames[1:]:
        start = time.perf_counter()
        tracker.update(frame)
        times.append(time.perf_counter() - start)
    split = tracker.timing.per_frame_ms()
    out = {"sgemm_gmacs": sgemm / 1e9, "network_ms": network * 1e3, "fps": 1.0 / float(np.median(times)),
           "pre_ms": split["preprocess"], "post_ms": split["postprocess"], "peak_rss_mib": _status_mib("VmHWM")}
    if out["peak_rss_mib"] is not None and before is not None:
        out["model_rss_mib"] = out["peak_rss_mib"] - before
    if task["profile"]:
        out["profile"] = _profile(model, task)
    return out


def _profile(model: Any, task: dict[str, Any], runs: int = 20, warmup: int = 3) -> list[tuple[str, float]]:
    """Top ops by time per frame (ms) by op and input shape: torch.profiler's self CPU time, or
    ONNX Runtime's node profile (NCHWc inputs show their blocked shape)."""
    x = torch.randn(1, 3, model.search_size, model.search_size)
    model.template(torch.randn(1, 3, model.template_size, model.template_size))
    totals: collections.Counter[str] = collections.Counter()
    if task["backend"].startswith("onnxruntime"):
        from lighttrack_nas.deploy.onnx import create_session, session_options

        options = session_options(task["threads"], task["level"])
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tempfile.mkdtemp()) / "ort")
        model.frame_session = create_session(task["onnx"][task["backend"]], options=options)
        for _ in range(warmup + runs):
            model.track(x)
        events = json.loads(Path(model.frame_session.end_profiling()).read_text())
        kernels = [e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")]
        per_run = len(kernels) // (warmup + runs)
        for e in kernels[warmup * per_run:]:
            shapes = [list(d.values())[0] for d in e["args"].get("input_type_shape", [])[:1]]
            totals[f"{e['args']['op_name']} {shapes}"] += e["dur"] / 1e3 / runs
    else:
        from torch.profiler import ProfilerActivity, profile

        with torch.inference_mode():
            for _ in range(3):
                model.track(x)
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                for _ in range(runs):
                    model.track(x)
        for e in prof.key_averages(group_by_input_shape=True):
            shapes = "x".join(str(d) for d in (e.input_shapes[0] if e.input_shapes and e.input_shapes[0] else []))
            totals[f"{e.key} [{shapes}]"] += e.self_cpu_time_total / 1e3 / runs
    return totals.most_common(15)


def _target_missed(name: str, threads: int, row: dict[str, float]) -> bool:
    if "lighttrack-mobile" not in name or "tiny" in name:
        return False
    if threads == 1:
        return row["ratio"] > TARGETS["ratio_1"] or row["fps"] < TARGETS["fps_1"]
    return threads == 2 and row["network_ms"] > TARGETS["ms_2"]


def main() -> int:
    from lighttrack_nas.cost import count_tracking_model
    from lighttrack_nas.deploy import fuse
    from lighttrack_nas.deploy.onnx import export_onnx
    from lighttrack_nas.deploy.quantize import random_crops
    from lighttrack_nas.machine import machine_info

    args = parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench_inference_"))
    configs = []
    for i, config in enumerate(args.config):
        space, arch, crops = _parse_config(config)
        model = _subnet(space, arch, crops)
        name = f"{arch} ({Path(space).stem}{f' {crops[0]}/{crops[1]}' if crops else ''})"
        onnx = {}
        for backend in {"onnxruntime", "onnxruntime-int8"} & set(args.backends):
            calibration = random_crops(model.template_size, model.search_size, 8) if "int8" in backend else None
            onnx[backend] = str(export_onnx(fuse(model), workdir / f"model{i}-{backend}.onnx", calibration)[1])
        configs.append({"name": name, "space": space, "arch": arch, "crops": crops, "onnx": onnx,
                        "macs": count_tracking_model(model).macs})
        print(f"{name}: {configs[-1]['macs'] / 1e6:.1f} M MACs per frame", flush=True)
    tasks = [{**c, "threads": t, "backend": b, "level": args.ort_level, "frames": args.frames,
              "min_run_time": args.min_run_time, "profile": args.profile == "always" and r == 0}
             for r in range(args.rounds) for c in configs for t in args.threads for b in args.backends]
    results: dict[tuple[str, int, str], list[dict[str, Any]]] = collections.defaultdict(list)
    context = get_context("spawn")
    for i, task in enumerate(tasks):
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            out = pool.submit(measure, task).result()
        out["bound_ms"] = task["macs"] / (out["sgemm_gmacs"] * 1e9) * 1e3
        out["ratio"] = out["network_ms"] / out["bound_ms"]
        results[(task["name"], task["threads"], task["backend"])].append(out)
        print(f"[{i + 1}/{len(tasks)}] {task['name']}, {task['threads']} thread(s), {task['backend']}: "
              f"network {out['network_ms']:.2f} ms ({out['ratio']:.2f}x bound), {out['fps']:.1f} fps", flush=True)
    rows = []
    for (name, threads, backend), runs in results.items():
        row = {key: statistics.median(r[key] for r in runs)
               for key in ("network_ms", "bound_ms", "ratio", "sgemm_gmacs", "fps", "pre_ms", "post_ms")}
        for key in ("peak_rss_mib", "model_rss_mib"):
            values = [r[key] for r in runs if r.get(key) is not None]
            row[key] = max(values) if values else None
        row.update(name=name, threads=threads, backend=backend, rounds=len(runs),
                   profile=next((r["profile"] for r in runs if "profile" in r), None))
        rows.append(row)
    for row in rows:
        missed = _target_missed(row["name"], row["threads"], row)
        row["target_missed"] = missed
        if missed and args.profile == "missed":
            config = next(c for c in configs if c["name"] == row["name"])
            task = {**config, "threads": row["threads"], "backend": row["backend"], "level": args.ort_level,
                    "frames": 5, "min_run_time": 0.1, "profile": True}
            with ProcessPoolExecutor(1, mp_context=context) as pool:
                row["profile"] = pool.submit(measure, task).result()["profile"]
    info = machine_info()
    versions = _versions()
    print(f"\nmachine: {info['cpu']}, {info['cores']} cores; {', '.join(f'{k} {v}' for k, v in versions.items())}; "
          f"median of {args.rounds} round(s)\n")
    print("| model | threads | backend | network ms | compute bound ms (sgemm G MAC/s) | ratio | tracker fps "
          "| crop+pre / post ms | peak RSS MiB (above pre-load) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        rss = "n/a" if row["peak_rss_mib"] is None else f"{row['peak_rss_mib']:.0f} ({row['model_rss_mib']:.0f})"
        print(f"| {row['name']} | {row['threads']} | {row['backend']} | {row['network_ms']:.2f} | "
              f"{row['bound_ms']:.2f} ({row['sgemm_gmacs']:.1f}) | {row['ratio']:.2f}x | {row['fps']:.1f} | "
              f"{row['pre_ms']:.2f} / {row['post_ms']:.2f} | {rss} |")
    for name in dict.fromkeys(row["name"] for row in rows):
        for threads in args.threads:
            f32, i8 = results.get((name, threads, "onnxruntime")), results.get((name, threads, "onnxruntime-int8"))
            if f32 and i8:
                ratios = [a["network_ms"] / b["network_ms"] for a, b in zip(f32, i8)]
                print(f"int8 speed-up over onnxruntime float32, {name}, {threads} thread(s): "
                      f"{statistics.median(ratios):.2f}x (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    for row in rows:
        if row["profile"]:
            flag = " (target missed)" if row["target_missed"] else ""
            print(f"\nper-op profile (a separate run), {row['name']}, {row['threads']} thread(s), "
                  f"{row['backend']}{flag}, ms per frame:")
            for op, ms in row["profile"]:
                print(f"  {ms:7.3f}  {op}")
    if args.json:
        write_json(args.json, {"machine": info, "versions": versions, "rounds": args.rounds,
                               "ort_level": args.ort_level, "targets": TARGETS, "rows": rows}, indent=1)
        print(f"\nwrote {args.json}")
    return 0


def _versions() -> dict[str, str]:
    import cv2
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "onnx": onnx.__version__,
            "numpy": np.__version__, "opencv": cv2.__version__}


if __name__ == "__main__":
    run_cli(main)
