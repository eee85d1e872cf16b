#!/usr/bin/env python
"""Generate a synthetic tracking data set from real photographs, in the GOT-10k layout.

Writes OUT/<split>/list.txt and OUT/<split>/<split>_NNNNNN/ with 00000001.jpg..., groundtruth.txt
(x,y,w,h, %.3f), absence.label, cover.label and meta_info.ini (resolution and challenges). Train,
val and test cut their objects from disjoint photographs. Output is byte-identical for the same
seed, split, counts and size, whatever --workers is. An existing split folder from an earlier
generation is replaced; read the result with open_dataset("got10k", OUT, split). See docs/data.md.
"""
from __future__ import annotations

import argparse
import os
import time

from lighttrack_nas.cli import run_cli
from lighttrack_nas.data.synthetic import SPLITS, generate_dataset


def frame_size(text: str) -> tuple[int, int]:
    """Parse ``WxH`` (e.g. ``640x480``)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}") from None
    return width, height


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="data-set root; the split is written to OUT/<split>")
    p.add_argument("--split", required=True, choices=SPLITS,
                   help="which split (decides the source photographs of the objects)")
    p.add_argument("--sequences", type=int, default=100, metavar="N", help="number of sequences (default: %(default)s)")
    p.add_argument("--frames", type=int, default=100, metavar="F", help="frames per sequence (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, metavar="S",
                   help="base seed; sequence i is seeded by (S, split, i) (default: %(default)s)")
    p.add_argument("--size", type=frame_size, default=(640, 480), metavar="WxH",
                   help="frame size in pixels, at least 32x32 (default: 640x480)")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), metavar="K",
                   help="worker processes; does not change the output (default: %(default)s)")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    start = time.perf_counter()
    root = generate_dataset(args.out, args.split, args.sequences, args.frames, args.seed, args.size, args.workers)
    print(f"wrote {args.sequences} sequences x {args.frames} frames ({args.size[0]}x{args.size[1]}) to "
          f"{root / args.split} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
