"""Which int8 settings keep the searched subnet closest to float, judged on VAL crops only (issue 30).
Rule fixed before running: the variant with the highest peak agreement on 256 val crops (ties: lower
box error) becomes the default only if it beats minmax by >= 1 point of agreement."""
import sys, time, collections
import torch, onnx
sys.path.insert(0, '.'); sys.path.insert(0, 'tools')
from export_onnx import check_int8
from lighttrack_nas.models import load_tracking_model
from lighttrack_nas.data.readers import open_dataset
from lighttrack_nas.deploy import fuse
from lighttrack_nas.deploy.onnx import export_branches, OnnxTrackingModel
from lighttrack_nas.deploy.quantize import calibration_crops, quantize_branches
torch.set_num_threads(1)
ckpt = sys.argv[1]
model = load_tracking_model(ckpt, None)
fused = fuse(model)
tpl, frm = export_branches(fused)
print("frame graph op types:", dict(collections.Counter(n.op_type for n in frm.graph.node)))
train = open_dataset("got10k", "cache/data_tiny", "train"); val = open_dataset("got10k", "cache/data_tiny", "val")
T, S = model.template_size, model.search_size
cal = calibration_crops(train, T, S, 128); cal512 = calibration_crops(train, T, S, 512)
check = calibration_crops(val, T, S, 256, seed=7)
variants = {"minmax": dict(), "percentile": dict(method="percentile"), "entropy": dict(method="entropy"),
            "minmax-512crops": dict(crops=cal512), "float-correlation": dict(keep_float=["MatMul"]),
            "float-depthwise": dict(keep_float=["DepthwiseConv"]), "int8-activations": dict(activations="int8")}
for opts in variants.values():   # as measured on 2026-12-05: nothing else kept float (the default keeps Output)
    opts.setdefault("keep_float", [])
import statistics
def frame_ms(m, z, x, n=200):
    zf = m.template_features(z); ts = []
    for _ in range(n):
        t = time.perf_counter(); m.head(zf, x); ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1e3
z0, x0 = check[0]
print(f"float ORT frame branch {frame_ms(OnnxTrackingModel(tpl, frm, threads=1), z0, x0):.2f} ms", flush=True)
for name, opts in variants.items():
    crops = opts.pop("crops", cal)
    t0 = time.time()
    t, f = quantize_branches(tpl, frm, crops, **opts)
    m = OnnxTrackingModel(t, f, threads=1)
    agree, err = check_int8(model, m, check)
    print(f"{name:20s} peak agreement {agree:.1%}  box error {err:.2f} px  frame branch {frame_ms(m, z0, x0):.2f} ms  ({time.time()-t0:.0f} s)", flush=True)
