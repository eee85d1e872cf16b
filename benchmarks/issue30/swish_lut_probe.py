#!/usr/bin/env python
"""Would Swish as one uint8 lookup table make the int8 frame graph faster? (issue 30, probe)

ONNX Runtime has no quantised Swish: the project's QDQ graph runs it as QLinearSigmoid + QLinearMul
(3.2 of 12.3 ms in the 2026-12-05 profile). This probe rewrites each Swish of the int8 graph,
  Q(a) -> [DQ -> Sigmoid -> Q -> DQ] * DQ(a) -> Mul -> Q(m),
as one table from a's uint8 code to m's (Cast to int32, then Gather on a 256-entry table), checks that
the outputs do not move, and times LightTrack-Mobile's frame graph (random weights, calibrated on random
crops: right for speed only) in ONNX Runtime float32, int8 and int8 with the tables, 1 thread, ROUNDS
interleaved rounds of 30 runs (medians).

  python benchmarks/issue30/swish_lut_probe.py [ROUNDS]
"""
from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import onnx
from mobile_graphs import mobile_frame_graphs
from onnx import helper, numpy_helper

from lighttrack_nas.deploy.onnx import create_session


def init_value(graph: onnx.GraphProto, name: str) -> np.ndarray:
    for t in graph.initializer:
        if t.name == name:
            return numpy_helper.to_array(t)
    raise KeyError(name)


def swish_to_lut(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """``model`` (changed in place) with every Swish QDQ pattern replaced by a table, and how many were."""
    g = model.graph
    prod = {o: n for n in g.node for o in n.output}
    cons = {}
    for n in g.node:
        for i in n.input:
            cons.setdefault(i, []).append(n)
    drop, new, count = set(), [], 0
    for sig in [n for n in g.node if n.op_type == "Sigmoid"]:
        dq1 = prod.get(sig.input[0])
        if dq1 is None or dq1.op_type != "DequantizeLinear":
            continue
        qa = dq1.input[0]
        qs = cons[sig.output[0]]
        if len(qs) != 1 or qs[0].op_type != "QuantizeLinear":
            continue
        dqs = cons[qs[0].output[0]]
        if len(dqs) != 1 or dqs[0].op_type != "DequantizeLinear":
            continue
        muls = cons[dqs[0].output[0]]
        if len(muls) != 1 or muls[0].op_type != "Mul":
            continue
        mul = muls[0]
        other = prod.get([i for i in mul.input if i != dqs[0].output[0]][0])
        if other is None or other.op_type != "DequantizeLinear" or other.input[0] != qa:
            continue
        qms = cons[mul.output[0]]
        if len(qms) != 1 or qms[0].op_type != "QuantizeLinear":
            continue
        qm = qms[0]
        sa, za = float(init_value(g, dq1.input[1])), int(init_value(g, dq1.input[2]))
        sm, zm = float(init_value(g, qm.input[1])), int(init_value(g, qm.input[2]))
        x = sa * (np.arange(256) - za)
        y = x / (1 + np.exp(-x))
        lut = np.clip(np.round(y / sm) + zm, 0, 255).astype(np.uint8)
        name = f"swish_lut_{count}"
        g.initializer.append(numpy_helper.from_array(lut, name))
        new += [helper.make_node("Cast", [qa], [f"{name}_idx"], to=onnx.TensorProto.INT32),
                helper.make_node("Gather", [name, f"{name}_idx"], [qm.output[0]], axis=0)]
        drop |= {id(sig), id(qs[0]), id(dqs[0]), id(mul), id(qm)}
        drop |= {id(dq1)} if len(cons[dq1.output[0]]) == 1 else set()
        drop |= {id(other)} if len(cons[other.output[0]]) == 1 else set()
        count += 1
    keep = [n for n in g.node if id(n) not in drop]
    del g.node[:]
    g.node.extend(keep + new)
    # topological order
    order, ready, pending = [], {i.name for i in g.input} | {t.name for t in g.initializer}, list(g.node)
    while pending:
        rest = []
        for n in pending:
            if all(i in ready or i == "" for i in n.input):
                order.append(n); ready |= set(n.output)
            else:
                rest.append(n)
        if len(rest) == len(pending):
            raise RuntimeError("cycle")
        pending = rest
    del g.node[:]
    g.node.extend(order)
    return model, count


def main(rounds: int = 7, runs: int = 30) -> None:
    f32, f8, feed = mobile_frame_graphs()
    lut, n = swish_to_lut(onnx.ModelProto.FromString(f8.SerializeToString()))
    print("Swish patterns replaced:", n)
    sessions = {name: create_session(m, threads=1) for name, m in (("float32", f32), ("int8", f8), ("int8-lut", lut))}
    outs = {k: s.run(None, feed) for k, s in sessions.items()}
    print("int8 with tables vs int8, max |difference| per output:",
          [float(np.abs(a - b).max()) for a, b in zip(outs["int8-lut"], outs["int8"])])
    times: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        for k, s in sessions.items():
            for _ in range(3):
                s.run(None, feed)
            samples = []
            for _ in range(runs):
                start = time.perf_counter()
                s.run(None, feed)
                samples.append(time.perf_counter() - start)
            times[k].append(statistics.median(samples) * 1e3)
    for k, v in times.items():
        ratio = statistics.median([b / c for b, c in zip(times["float32"], v)])
        print(f"{k}: {statistics.median(v):.2f} ms; ONNX Runtime float32 / this: median {ratio:.2f}x")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 7)
