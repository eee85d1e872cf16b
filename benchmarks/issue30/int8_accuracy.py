#!/usr/bin/env python
"""Does int8 keep the tracker's accuracy? ONNX Runtime float32 vs int8 on trained subnets, paired.

    python benchmarks/issue30/int8_accuracy.py --checkpoints RUN0/checkpoint.pt RUN7/checkpoint.pt \\
        --root cache/data_tiny --splits val test --out runs/i30/accuracy

Each checkpoint is tracked with ``tools/test.py --backend onnxruntime`` and ``--backend
onnxruntime-int8`` (calibrated on ``--calibration`` crop pairs of the train split) on every split, and
scored with ``tools/eval.py``. Prints and writes ``OUT/accuracy-OP....json``, named after the
``--keep-float`` op types (by default ``Output``, the int8 backend's default: ``accuracy-Output.json``;
``--keep-float`` alone quantises every layer: ``accuracy.json``): per checkpoint and pooled over them,
the int8 - float32 AO with a 95 % paired bootstrap interval over the sequences (pooled: the checkpoints
as rows crossed with the sequences, ``evaluate.paired_bootstrap``, the sequences weighted by the frames
their AO counts, as AO pools them). A result folder is kept when it holds every sequence and its
``NAME.json`` beside it names the same checkpoint (digest), backend, calibration, threads and kept op
types, so a re-run tracks only what is missing or stale.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from lighttrack_nas.cli import run_cli
from lighttrack_nas.data import open_dataset
from lighttrack_nas.deploy.quantize import DEFAULT_KEEP_FLOAT
from lighttrack_nas.evaluate import paired_bootstrap
from lighttrack_nas.io import write_json
from lighttrack_nas.search.runner import file_digest

ROOT = Path(__file__).resolve().parents[2]
BACKENDS = ("onnxruntime", "onnxruntime-int8")


def _tool(name: str, *args: object) -> str:
    done = subprocess.run([sys.executable, str(ROOT / "tools" / name), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(f"tools/{name} {' '.join(map(str, args))} failed: {last}")
    return done.stdout


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoints", nargs="+", required=True, type=Path, help="trained subnet checkpoints (.pt)")
    p.add_argument("--root", required=True, type=Path, help="GOT-10k-layout data root with the splits and train")
    p.add_argument("--splits", nargs="+", default=["val", "test"], help="splits to track (default: %(default)s)")
    p.add_argument("--out", required=True, type=Path, help="output folder: tracker results and accuracy-OP....json")
    p.add_argument("--calibration", type=int, default=128, help="int8 calibration crop pairs (default: %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="threads per tracker (default: %(default)s)")
    p.add_argument("--keep-float", nargs="*", default=list(DEFAULT_KEEP_FLOAT), metavar="OP",
                   help="int8: op types given no quantisation (tools/test.py --keep-float; the flag alone: none); "
                        "the int8 results and the report are named after them (accuracy-OP....json), so variants "
                        "share OUT and its float32 results (default: %(default)s)")
    args = p.parse_args()
    names = [f"{path.parent.name}" for path in args.checkpoints]
    if len(set(names)) < len(names):
        raise ValueError("checkpoints must lie in folders of different names (the results are named after them)")
    variant = "".join(f"-{op}" for op in args.keep_float)  # names the int8 results and the report
    report: dict = {"calibration": args.calibration, "threads": args.threads, "keep_float": args.keep_float,
                    "splits": {}}
    for split in args.splits:
        sequences = [s.name for s in open_dataset("got10k", args.root, split)]
        gaps, rows = [], {}
        for name, checkpoint in zip(names, args.checkpoints):
            scores = {}
            for backend in BACKENDS:
                int8 = backend.endswith("int8")
                folder = args.out / split / f"{name}-{backend}{variant if int8 else ''}"
                settings = {"checkpoint": file_digest(checkpoint), "backend": backend, "threads": args.threads,
                            "calibration": args.calibration if int8 else None,
                            "keep_float": args.keep_float if int8 else []}
                stamp = folder.with_suffix(".json")
                if not (stamp.exists() and json.loads(stamp.read_text()) == settings
                        and all((folder / seq / f"{seq}_001.txt").exists() for seq in sequences)):
                    _tool("test.py", "--checkpoint", checkpoint, "--dataset", "got10k", "--root", args.root, "--split",
                          split, "--out", args.out / split, "--name", folder.name, "--backend", backend, "--threads",
                          args.threads, "--calibration", args.calibration,
                          *(["--keep-float", *args.keep_float] if int8 else []))
                    write_json(stamp, settings)
                scores[backend] = json.loads(_tool("eval.py", "--dataset", "got10k", "--root", args.root, "--split",
                                                   split, "--results", folder, "--json"))
            per = [{seq: scores[b]["per_sequence"][seq]["ao"] for seq in sequences} for b in BACKENDS]
            gap = [per[1][seq] - per[0][seq] for seq in sequences]
            frames = [scores[BACKENDS[0]]["per_sequence"][seq]["ao_frames"] for seq in sequences]
            mean, low, high = paired_bootstrap(gap, frames)
            rows[name] = {"checkpoint": str(checkpoint), "float32_ao": scores[BACKENDS[0]]["ao"],
                          "int8_ao": scores[BACKENDS[1]]["ao"], "int8_minus_float32": [mean, low, high]}
            gaps.append(gap)
            print(f"{split} {name}: AO float32 {rows[name]['float32_ao']:.3f}, int8 {rows[name]['int8_ao']:.3f}; "
                  f"int8 - float32 {mean:+.3f} [{low:+.3f}, {high:+.3f}]")
        mean, low, high = paired_bootstrap(np.array(gaps), frames)
        report["splits"][split] = {"sequences": len(sequences), "subnets": rows, "pooled": [mean, low, high]}
        print(f"{split} pooled over {len(names)} subnets x {len(sequences)} sequences: int8 - float32 {mean:+.3f} "
              f"[{low:+.3f}, {high:+.3f}]")
    write_json(args.out / f"accuracy{variant}.json", report)
    return 0


if __name__ == "__main__":
    run_cli(main)
