"""Does ORT's intra-op spinning slow the tracker's own pre-processing at 2 threads? (issue 30 bench: pre 5-15 ms)
A/B in fresh processes, rounds interleaved: allow_spinning 1 (default) vs 0."""
import sys, tempfile, statistics
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
sys.path.insert(0, '.'); sys.path.insert(0, 'benchmarks')

def run(task, spin):
    import lighttrack_nas.deploy.onnx as o
    base = o.session_options
    def patched(threads=1, optimization="all"):
        opts = base(threads, optimization)
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        return opts
    o.session_options = patched
    import inference
    return inference.measure(task)

if __name__ == "__main__":
    import inference
    from lighttrack_nas.deploy import fuse
    from lighttrack_nas.deploy.onnx import export_onnx
    from lighttrack_nas.deploy.quantize import random_crops
    arch = open(sys.argv[1] if len(sys.argv) > 1 else "runs/i30/arch.txt").read().strip()  # a file holding the arch string
    configs = [("search_spaces/lighttrack_tiny.yaml", arch, (80, 192)), ("search_spaces/lighttrack.yaml", "lighttrack-mobile", None)]
    work = Path(tempfile.mkdtemp())
    tasks = []
    for i, (space, a, crops) in enumerate(configs):
        m = inference._subnet(space, a, crops)
        for b in ("onnxruntime", "onnxruntime-int8"):
            cal = random_crops(m.template_size, m.search_size, 8) if "int8" in b else None
            path = str(export_onnx(fuse(m), work / f"m{i}{b}.onnx", cal)[1])
            tasks.append((f"{'subnet' if i == 0 else 'mobile'} {b}", {"space": space, "arch": a, "crops": crops, "onnx": {b: path},
                          "threads": 2, "backend": b, "level": "all", "frames": 200, "min_run_time": 0.5, "profile": False}))
    res = {}
    for r in range(3):
        for name, task in tasks:
            for spin in ("1", "0"):
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                    out = pool.submit(run, task, spin).result()
                res.setdefault((name, spin), []).append(out)
                print(r, name, "spin", spin, f"network {out['network_ms']:.2f} ms, fps {out['fps']:.1f}, pre {out['pre_ms']:.2f} ms", flush=True)
    for (name, spin), outs in res.items():
        med = lambda k: statistics.median(o[k] for o in outs)
        print(f"MEDIAN {name} spin {spin}: network {med('network_ms'):.2f} ms, fps {med('fps'):.1f}, pre {med('pre_ms'):.2f} ms")
