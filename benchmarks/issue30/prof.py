"""Per-op-type ONNX Runtime profile of the float32 vs int8 frame graph (issue 30).
usage: python benchmarks/issue30/prof.py SPACE ARCH TEMPLATE SEARCH [KEEP_FLOAT_OPS]"""
import json, sys, time, collections
import numpy as np, torch, onnxruntime as ort
sys.path.insert(0, '.')
from lighttrack_nas.models import build_subnet, load_space
from lighttrack_nas.deploy.fuse import fuse
from lighttrack_nas.deploy.onnx import export_branches, session_options
from lighttrack_nas.deploy.quantize import quantize_branches, random_crops
torch.set_num_threads(1)
space_file, arch, T, S = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keep = sys.argv[5].split(",") if len(sys.argv) > 5 and sys.argv[5] else []
sp = load_space(space_file); sp.settings.update(template_size=T, search_size=S)
torch.manual_seed(0)
m = fuse(build_subnet(sp, arch).eval())
tpl, frm = export_branches(m)
_, q = quantize_branches(tpl, frm, random_crops(T, S, 8), keep_float=keep)
ts = ort.InferenceSession(tpl.SerializeToString(), session_options(1), providers=["CPUExecutionProvider"])
z = np.random.rand(1, 3, T, T).astype(np.float32); x = np.random.rand(1, 3, S, S).astype(np.float32)
feeds = {"x": x, **dict(zip([o.name for o in ts.get_outputs()], ts.run(None, {"z": z})))}
for name, g in [("float", frm), ("int8", q)]:
    so = session_options(1); so.enable_profiling = True; so.profile_file_prefix = f"runs/i30/prof/{name}"; __import__("os").makedirs("runs/i30/prof", exist_ok=True)
    s = ort.InferenceSession(g.SerializeToString(), so, providers=["CPUExecutionProvider"])
    for _ in range(20): s.run(None, feeds)
    t = []
    for _ in range(100):
        t0 = time.perf_counter(); s.run(None, feeds); t.append(time.perf_counter() - t0)
    f = s.end_profiling()
    ev = json.load(open(f)); by = collections.Counter(); n = collections.Counter()
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            by[e["args"]["op_name"]] += e["dur"]; n[e["args"]["op_name"]] += 1
    tot = sum(by.values())
    groups = {nd.name: next((a.i for a in nd.attribute if a.name == "group"), 1) for nd in g.graph.node}
    dw = collections.Counter()
    for e in ev:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and "Conv" in e["args"]["op_name"]:
            node = e["name"][:-len("_kernel_time")]
            base = next((k for k in groups if node.startswith(k)), None)
            dw["dw" if base and groups[base] > 1 else "pw/full" if base else "?"] += e["dur"]
    print("   conv split:", {k: round(v / 120 / 1e3, 2) for k, v in dw.items()})
    print(f"{name}: median {np.median(t)*1e3:.2f} ms; kernel time per run by op type (ms):")
    for k, v in by.most_common(12): print(f"   {k:24s} {v/120/1e3:6.2f}  x{n[k]//120}")
