"""Deployment: the fused inference form, ONNX export round trip, the ONNX Runtime tracker backend."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from lighttrack_nas.cost.latency import network_latency
from lighttrack_nas.data.sequence import Sequence
from lighttrack_nas.deploy import BACKENDS, FusedTrackingNet, fuse, inference_model
from lighttrack_nas.deploy.onnx import OnnxTrackingModel, export_branches, onnx_runner, session_options, template_path
from lighttrack_nas.deploy.quantize import (CalibrationError, calibration_crops, check_crops, output_layers,
                                           quantize_branches)
from lighttrack_nas.models import build_supernet, load_tracking_model
from lighttrack_nas.models.ops import MBConv
from lighttrack_nas.tracker import Tracker

ROOT = Path(__file__).resolve().parents[1]
ARCH = "lighttrack-mobile"


@pytest.fixture(scope="module")
def supernet(tiny_space):
    torch.manual_seed(0)
    net = build_supernet(tiny_space)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is really tested
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return net.eval()


def _max_diff(a, b) -> float:
    return max(float((u - v).abs().max()) for u, v in zip(a, b))


def _crops(net, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, net.template_size, net.template_size, generator=g),
            torch.randn(batch, 3, net.search_size, net.search_size, generator=g))


# random archs of the tiny space; the "out" override puts half of them at stride-8 positions
@pytest.mark.parametrize("seed,out,memory_format", [(0, "s2b0", torch.channels_last), (1, "s2b3", torch.channels_last),
                                                    (2, None, torch.channels_last), (3, "s4b3", torch.channels_last),
                                                    (4, "s2b1", torch.contiguous_format)])
def test_fused_equals_training_form(supernet, tiny_space, seed, out, memory_format):
    arch = tiny_space.sample(seed)
    arch = arch.replace({"out": out}) if out else arch
    sub = supernet.extract(arch).eval()
    fused = fuse(sub, memory_format)
    assert isinstance(fused, FusedTrackingNet) and fused.stride == sub.stride and fused.score_size == sub.score_size
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    z, x = _crops(sub, batch=2, seed=seed)
    with torch.no_grad():
        assert _max_diff(sub(z, x), fused(z, x)) <= 1e-4           # batched: gate applied to the map
        sub.template(z[:1])
        fused.template(z[:1])
        assert _max_diff(sub.track(x[:1]), fused.track(x[:1])) <= 1e-4  # batch 1: gate folded into weights


def test_fuse_leaves_the_training_form_alone_and_rejects_supernets(supernet, tiny_space):
    sub = supernet.extract(tiny_space.sample(7))
    before = {k: v.clone() for k, v in sub.state_dict().items()}
    fuse(sub)
    assert all(torch.equal(before[k], v) for k, v in sub.state_dict().items())
    with pytest.raises(TypeError, match="extract"):
        fuse(supernet)
    with pytest.raises(ValueError, match="backend"):
        inference_model(sub, "tensorrt")


@pytest.fixture(scope="module")
def exported(supernet, tiny_space, tmp_path_factory):
    """tools/export_onnx.py run once on a supernet checkpoint: (checkpoint, frame graph path, stdout)."""
    folder = tmp_path_factory.mktemp("onnx")
    checkpoint = folder / "supernet.pt"
    torch.save({"kind": "supernet", "model": supernet.state_dict(), "space": tiny_space.to_dict()}, checkpoint)
    out = folder / "model.onnx"
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "export_onnx.py"), "--checkpoint", str(checkpoint),
                           "--arch", ARCH, "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return checkpoint, out, proc.stdout


def test_export_tool_writes_both_graphs_and_checks_them(exported):
    _, out, stdout = exported
    assert out.is_file() and template_path(out) == out.with_name("model.template.onnx") and template_path(out).is_file()
    assert "max abs difference" in stdout and "(ok," in stdout


def test_onnx_round_trip_equals_pytorch(exported):
    checkpoint, out, _ = exported
    model = load_tracking_model(checkpoint, ARCH)
    runtime = OnnxTrackingModel.load(out)
    assert (runtime.template_size, runtime.search_size, runtime.stride, runtime.score_size) == \
        (model.template_size, model.search_size, model.stride, model.score_size)
    z, x = _crops(model, batch=1, seed=3)
    with torch.no_grad():
        expected = model(z, x)
    runtime.template(z)
    cls, reg = runtime.track(x)
    assert isinstance(cls, torch.Tensor) and cls.shape == expected[0].shape and reg.shape == expected[1].shape
    assert _max_diff(expected, (cls, reg)) <= 1e-4
    assert runtime.parameters is not None and not list(runtime.parameters())
    with pytest.raises(RuntimeError, match="template"):
        OnnxTrackingModel.load(out).track(x)
    with pytest.raises(FileNotFoundError):
        OnnxTrackingModel.load(out.with_name("missing.onnx"))


def _moving_square_sequence(folder: Path, frames: int = 6) -> Sequence:
    """A textured square drifting over a noisy background, written as PNG frames with cv2."""
    rng = np.random.default_rng(0)
    background = rng.integers(0, 120, size=(120, 160, 3), dtype=np.uint8)
    texture = rng.integers(120, 256, size=(28, 28, 3), dtype=np.uint8)
    paths, boxes = [], []
    for i in range(frames):
        x, y = 40 + 4 * i, 30 + 3 * i
        image = background.copy()
        image[y:y + 28, x:x + 28] = texture
        path = folder / f"{i:04d}.png"
        assert cv2.imwrite(str(path), image)
        paths.append(path)
        boxes.append([x, y, 28, 28])
    return Sequence("square", paths, np.array(boxes, dtype=np.float64), np.ones(frames, dtype=bool))


def test_tracker_backends_give_the_same_boxes(exported, tmp_path):
    checkpoint, out, _ = exported
    seq = _moving_square_sequence(tmp_path)
    model = load_tracking_model(checkpoint, ARCH)
    results = {"training form": Tracker(model).track_sequence(seq)[0],
               "torch": Tracker(inference_model(model, "torch")).track_sequence(seq)[0],
               "onnxruntime": Tracker(OnnxTrackingModel.load(out)).track_sequence(seq)[0]}
    assert set(BACKENDS) - {"onnxruntime-int8"} <= set(results)   # int8: test_int8_backend_tracks_like_float
    for name, boxes in results.items():
        assert boxes.shape == (len(seq), 4) and np.isfinite(boxes).all()
        np.testing.assert_allclose(boxes, results["training form"], atol=1e-3, err_msg=name)


def test_latency_harness_times_onnxruntime(exported):
    _, out, _ = exported
    runtime = OnnxTrackingModel.load(out)
    assert network_latency(runtime, threads=1, min_run_time=0.05).median > 0
    run = onnx_runner(MBConv(8, 8, 1, 3, 4).eval(), [torch.randn(1, 8, 16, 16)])
    assert run()[0].shape == (1, 8, 16, 16)
    with pytest.raises(ValueError, match="backend"):
        network_latency(runtime, backend="tflite")


def test_onnx_sessions_leave_the_cores_to_the_tracker_between_frames():
    # a spinning intra-op pool starves the tracker's own cropping at 2 threads (docs/benchmarks.md)
    opts = session_options(threads=2)
    assert opts.intra_op_num_threads == 2
    assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"


def test_int8_backend_tracks_like_float(supernet, tmp_path):
    """The int8 export (calibrated on crops of the sequence's own frames, as from a train split) keeps
    its geometry, runs quantised ops, and tracks the moving square as the float model does."""
    import onnx

    seq = _moving_square_sequence(tmp_path, frames=8)
    sub = supernet.extract(supernet.space.decode(ARCH)).eval()
    crops = calibration_crops([seq], sub.template_size, sub.search_size, count=8)
    assert len(crops) == 8 and crops[0][0].shape == (1, 3, sub.template_size, sub.template_size)
    graphs = export_branches(fuse(sub))
    template, frame = quantize_branches(*graphs, crops)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in frame.graph.node}
    assert template == graphs[0]   # the template branch stays float
    onnx.save(template, template_path(tmp_path / "int8.onnx"))
    onnx.save(frame, tmp_path / "int8.onnx")
    runtime = OnnxTrackingModel.load(tmp_path / "int8.onnx")
    assert runtime.precision == "int8" and runtime.score_size == sub.score_size
    float_boxes = Tracker(OnnxTrackingModel(*graphs)).track_sequence(seq)[0]
    int8_boxes = Tracker(runtime).track_sequence(seq)[0]
    assert np.isfinite(int8_boxes).all()
    print("max int8 - float box difference (px):", np.abs(int8_boxes - float_boxes).max())
    assert np.abs(int8_boxes - float_boxes).max() <= 2.0   # pixels, on a 28-pixel target
    assert not np.allclose(int8_boxes[1:], float_boxes[1:], atol=1e-6)   # it really is another network

    def int8_matmuls(graph) -> list[bool]:
        """Per MatMul, whether all its inputs are dequantised (what ONNX Runtime fuses into QLinearMatMul)."""
        made_by = {out: n.op_type for n in graph.graph.node for out in n.output}
        return [all(made_by.get(i) == "DequantizeLinear" for i in n.input) for n in graph.graph.node if n.op_type == "MatMul"]

    kept = quantize_branches(*graphs, crops, keep_float=["MatMul"])[1]   # the correlation left in float...
    assert int8_matmuls(frame) and all(int8_matmuls(frame))
    assert sum(int8_matmuls(kept)) <= len(int8_matmuls(kept)) // 2   # ...but where ONNX Runtime fuses DQ -> op -> Q
    def output_producers(graph) -> list[str]:
        made_by = {out: n.op_type for n in graph.graph.node for out in n.output}
        return [made_by[o.name] for o in graph.graph.output]

    all_int8 = quantize_branches(*graphs, crops, keep_float=())[1]
    assert set(output_producers(all_int8)) == {"DequantizeLinear"}   # every layer int8: 8-bit outputs
    floated = quantize_branches(*graphs, crops, keep_float=["Output"])[1]
    assert "DequantizeLinear" not in output_producers(floated)   # the last layers write float outputs
    assert floated.SerializeToString() == frame.SerializeToString()   # the default
    weights = {w.name for w in floated.graph.initializer}
    heads = [n for n in floated.graph.node if n.name in output_layers(floated.graph) and n.op_type == "Conv"]
    assert len(heads) == 2 and all(n.input[1] in weights for n in heads)   # cls and reg: float weights
    with pytest.raises(ValueError, match=r"keep_float: \['Softmax3D'\] are not op types of this graph; its op types: .*'MatMul'"):
        quantize_branches(*graphs, crops, keep_float=["Softmax3D"])


def test_output_layers_stop_at_the_nearest_weighted_op():
    from onnx import TensorProto, helper

    def graph(*nodes, outputs=("y", "r", "e")):
        vi = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("x", *outputs)]
        return helper.make_graph(list(nodes), "g", vi[:1], vi[1:])

    nodes = [helper.make_node("Conv", ["x", "w"], ["a"], name="conv_a"),
             helper.make_node("Relu", ["a"], ["y"], name="relu_y"),           # output 1: Relu <- Conv
             helper.make_node("Conv", ["a", "w"], ["b"], name="conv_b"),
             helper.make_node("Add", ["b", "a"], ["r"], name="add_r"),        # output 2: Add <- two Convs
             helper.make_node("Sigmoid", ["x"], ["e"], name="sig_e")]         # output 3: no weighted op above
    assert output_layers(graph(*nodes)) == {"relu_y", "conv_a", "add_r", "conv_b", "sig_e"}
    assert output_layers(graph(*nodes, outputs=("y",))) == {"relu_y", "conv_a"}
    unnamed = helper.make_node("Relu", ["a"], ["y"])
    with pytest.raises(ValueError, match="a Relu node writing \\['y'\\] has no name"):
        output_layers(graph(nodes[0], unnamed, outputs=("y",)))


def test_int8_calibration_errors_are_named(supernet, tmp_path):
    sub = supernet.extract(supernet.space.decode(ARCH))
    with pytest.raises(CalibrationError, match="needs calibration crops"):
        inference_model(sub, "onnxruntime-int8")
    with pytest.raises(CalibrationError, match="empty"):
        check_crops([], sub.template_size, sub.search_size)
    z, x = _crops(sub, batch=1)
    with pytest.raises(CalibrationError, match=r"calibration crop 1: template \(1, 3, 32, 32\)"):
        check_crops([(z, x), (z[..., :32, :32], x)], sub.template_size, sub.search_size)
    with pytest.raises(CalibrationError, match="at least 1"):
        calibration_crops([_moving_square_sequence(tmp_path)], sub.template_size, sub.search_size, count=0)
    with pytest.raises(CalibrationError, match="no sequences"):
        calibration_crops([], sub.template_size, sub.search_size, count=4)
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "export_onnx.py"), "--arch", ARCH, "--int8",
                           "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True)
    assert proc.returncode == 2 and "--int8 needs --data" in proc.stderr and not list(tmp_path.glob("*.onnx"))
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "test.py"), "--dataset", "got10k", "--root", str(tmp_path),
                           "--name", "x", "--keep-float", "MatMul"], capture_output=True, text=True)
    assert proc.returncode == 2 and "--keep-float only applies to --backend onnxruntime-int8" in proc.stderr


def test_bench_inference_configs_take_architecture_strings_with_colons():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_inference", ROOT / "benchmarks" / "inference.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    arch = "s1:k3e4|s2:k5e6|out:s3b1|reg:k5-skip"
    assert tool._parse_config("a.yaml:lighttrack-mobile") == ("a.yaml", "lighttrack-mobile", None)
    assert tool._parse_config("a.yaml:lighttrack-mobile:80x192") == ("a.yaml", "lighttrack-mobile", (80, 192))
    assert tool._parse_config(f"a.yaml:{arch}") == ("a.yaml", arch, None)
    assert tool._parse_config(f"a.yaml:{arch}:80x192") == ("a.yaml", arch, (80, 192))
