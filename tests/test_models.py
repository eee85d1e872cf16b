"""Supernet / subnet: equivalence, exact weights, separate towers, template caching, loading."""
import numpy as np
import pytest
import torch

from lighttrack_nas.models import LayerChoice, build_supernet, load_tracking_model, path_parameters
from lighttrack_nas.models.ops import Skip


@pytest.fixture(scope="module")
def supernet(tiny_space):
    torch.manual_seed(0)
    net = build_supernet(tiny_space)
    with torch.no_grad():  # non-trivial BatchNorm statistics so equivalence means something
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
    return net.eval()


def _inputs(net, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(batch, 3, net.template_size, net.template_size, generator=g),
            torch.randn(batch, 3, net.search_size, net.search_size, generator=g))


@pytest.mark.parametrize("seed", range(6))
def test_subnet_outputs_equal_supernet_path(supernet, tiny_space, seed):
    arch = tiny_space.sample(seed)
    z, x = _inputs(supernet, seed=seed)
    supernet.set_arch(arch)
    with torch.no_grad():
        cls_a, reg_a = supernet(z, x)
        sub = supernet.extract(arch).eval()
        cls_b, reg_b = sub(z, x)
    side = supernet.search_size // supernet.positions[arch["out"]].stride
    assert cls_a.shape == (2, 1, side, side) and reg_a.shape == (2, 4, side, side)
    assert (cls_a - cls_b).abs().max() <= 1e-5 and (reg_a - reg_b).abs().max() <= 1e-5
    assert reg_b.min() >= 0  # relu(x) * scale


def test_subnet_holds_exactly_the_path_weights(supernet, tiny_space):
    for seed in range(4):
        arch = tiny_space.sample(seed)
        supernet.set_arch(arch)
        sub = supernet.extract(arch)
        assert not any(isinstance(m, (LayerChoice, Skip)) for m in sub.modules())
        pos = supernet.positions[arch["out"]]
        used = path_parameters(supernet)
        # the path minus layers past the output position, other positions' norms and the other neck
        unused = {id(p) for layer in supernet.layers[pos.layer + 1:] for p in layer.parameters()}
        unused |= {id(p) for v, m in supernet.position_norms.items() if v != pos.value for p in m.parameters()}
        unused |= {id(p) for s, m in supernet.necks.items() if s != str(pos.stride) for p in m.parameters()}
        expected = sum(p.numel() for p in used if id(p) not in unused)
        assert sum(p.numel() for p in sub.parameters()) == expected
        with torch.no_grad():  # copies, not views of the supernet
            next(sub.parameters()).add_(1.0)
        assert not torch.equal(next(sub.parameters()), next(supernet.parameters()))


def test_each_tower_trains_its_own_weights(tiny_space):
    net = build_supernet(tiny_space).train()
    arch = tiny_space.sample(5)
    net.set_arch(arch)
    z, x = _inputs(net)
    cls, reg = net(z, x)
    reg.sum().backward()
    cls_tower, reg_tower = net.towers["cls"].chosen(), net.towers["reg"].chosen()
    assert all(p.grad is None for p in cls_tower.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in reg_tower.parameters())
    net.zero_grad(set_to_none=True)
    cls, reg = net(z, x)
    cls.sum().backward()
    assert all(p.grad is None for p in reg_tower.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in cls_tower.parameters())
    assert not {id(p) for p in cls_tower.parameters()} & {id(p) for p in reg_tower.parameters()}


def test_template_is_cached_for_tracking(supernet, tiny_space):
    arch = tiny_space.sample(2)
    sub = supernet.extract(arch).eval()
    z, x = _inputs(supernet, batch=1)
    with pytest.raises(RuntimeError, match="template"):
        sub.track(x)
    with torch.no_grad():
        sub.template(z)
        tracked = sub.track(x)
        direct = sub(z, x)
    assert all(torch.equal(a, b) for a, b in zip(tracked, direct))
    assert sub.score_size == sub.search_size // sub.stride


def test_stride8_positions_give_finer_maps(supernet, tiny_space):
    arch = tiny_space.sample(0).replace({"out": "s2b1"})
    sub = supernet.extract(arch)
    assert sub.stride == 8 and sub.score_size == tiny_space.settings["search_size"] // 8


def test_published_mobile_size(space):
    from lighttrack_nas.cost import count_tracking_model

    net = build_supernet(space)
    cost = count_tracking_model(net.extract(space.presets["lighttrack-mobile"]))
    assert abs(cost.params - 1.97e6) / 1.97e6 < 0.01  # published: about 1.97 M
    assert abs(cost.macs - 530e6) / 530e6 < 0.01  # published: about 530 M per frame


def test_load_tracking_model_from_checkpoints(tmp_path, supernet, tiny_space):
    arch = str(tiny_space.sample(9))
    path = tmp_path / "supernet.pt"
    torch.save({"kind": "supernet", "model": supernet.state_dict()}, path)
    model = load_tracking_model(path, arch, tiny_space)
    z, x = _inputs(supernet, batch=1)
    supernet.set_arch(tiny_space.decode(arch))
    with torch.no_grad():
        assert torch.allclose(model(z, x)[0], supernet(z, x)[0], atol=1e-6)
    sub_path = tmp_path / "subnet.pt"
    torch.save({"kind": "subnet", "arch": arch, "model": model.state_dict()}, sub_path)
    again = load_tracking_model(sub_path, None, tiny_space)
    with torch.no_grad():
        assert torch.equal(again(z, x)[0], model(z, x)[0])
    with pytest.raises(ValueError, match="not the requested"):
        load_tracking_model(sub_path, str(tiny_space.sample(10)), tiny_space)
    with pytest.raises(ValueError, match="--arch"):
        load_tracking_model(path, None, tiny_space)


def test_checkpoints_never_execute_code(tmp_path, tiny_space):
    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "x": Payload()}, path)
    with pytest.raises(ValueError, match="weights-only"):
        load_tracking_model(path, "lighttrack-mobile", tiny_space)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_tracking_model(tmp_path / "nope.pt", "lighttrack-mobile", tiny_space)


def test_shared_tower_kernels(tiny_space):
    from lighttrack_nas.space import SearchSpace

    spec = tiny_space.to_dict()
    spec["settings"]["head_share_kernels"] = ["dsconv"]
    space = SearchSpace.from_dict(spec)
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    plain = build_supernet(tiny_space)
    assert sum(p.numel() for p in net.parameters()) < sum(p.numel() for p in plain.parameters())
    choice = net.towers["cls"].candidates["128"][1]
    k3, k5 = choice.candidates["k3"], choice.candidates["k5"]
    assert k3.shared is k5.shared and k5.shared.depthwise.weight.shape[-1] == 5
    arch = dict(space.sample(3).items())
    arch.update({"cls_w": 128, "cls.1": "k3"})
    arch = space.validate(arch)
    net.set_arch(arch)
    z, x = _inputs(net)
    with torch.no_grad():
        expected = net(z, x)
        sub = net.extract(arch).eval()
        got = sub(z, x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(expected, got))
    layer = sub.cls_tower[1]
    assert layer.depthwise.weight.shape[-1] == 3
    assert torch.equal(layer.depthwise.weight, k5.shared.depthwise.weight[..., 1:4, 1:4])
    # the shared weights are on the path of both kernels, exactly once
    on_path = path_parameters(net)
    assert sum(p is k5.shared.depthwise.weight for p in on_path) == 1


def _extract_checked(net, table, arch, z, x):
    """The extracted subnet of ``arch``, checked equal to the supernet's path and costed exactly by ``table``."""
    from lighttrack_nas.cost import count_tracking_model

    net.set_arch(arch)
    with torch.no_grad():
        expected = net(z, x)
        sub = net.extract(arch).eval()
        got = sub(z, x)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(expected, got))
    cost = count_tracking_model(sub)
    assert (table.macs(arch), table.params(arch)) == (cost.macs, cost.params)
    return sub


def test_shared_tower_widths(tiny_space):
    """OFA's elastic width: one tower per kind at the largest width; narrower widths run its first
    channels, and extracted subnets hold copies of exactly those slices."""
    from lighttrack_nas.cost import CostTable, count_tracking_model
    from lighttrack_nas.space import SearchSpace

    spec = tiny_space.to_dict()
    spec["settings"].update(head_share_kernels=["dsconv"], head_share_widths=True)
    space = SearchSpace.from_dict(spec)
    torch.manual_seed(0)
    net = build_supernet(space)
    candidates = net.towers["cls"].candidates
    assert candidates["128"].shared is candidates["256"].shared
    z, x = _inputs(net)
    net.train()
    for seed in range(3):   # BatchNorm statistics of different slices
        net.set_arch(space.sample(seed))
        net(z, x)
    net.eval()
    table = CostTable(net)
    for seed in (4, 5):
        arch = space.validate({**space.sample(seed), "cls_w": 128, "reg_w": 192, "cls.1": "k3"})
        sub = _extract_checked(net, table, arch, z, x)
    shared = candidates["256"].shared[1].candidates["k5"].shared
    layer = sub.cls_tower[1]
    assert layer.pointwise.weight.shape[:2] == (32, 32) and shared.pointwise.weight.shape[:2] == (64, 64)
    assert torch.equal(layer.pointwise.weight, shared.pointwise.weight[:32, :32])
    assert torch.equal(layer.bn.running_mean, shared.bn.running_mean[:32])
    assert sum(p is shared.pointwise.weight for p in path_parameters(net)) == 1


def test_towers_per_stride(tiny_space):
    """``head_per_stride``: stride-8 and stride-16 output positions train separate towers; the
    space, extraction and the cost table are unchanged."""
    from lighttrack_nas.cost import CostTable
    from lighttrack_nas.space import SearchSpace

    spec = tiny_space.to_dict()
    spec["settings"].update(head_per_stride=True)
    space = SearchSpace.from_dict(spec)
    torch.manual_seed(0)
    net = build_supernet(space).eval()
    assert sorted(net.tower_sets) == ["16", "8"]
    by_stride = {}
    for value, position in net.positions.items():
        net.set_arch({**space.sample(0), "out": value})
        by_stride.setdefault(position.stride, net.towers)
        assert net.towers is by_stride[position.stride]
    assert by_stride[8] is not by_stride[16]
    table = CostTable(net)
    z, x = _inputs(net)
    for out in ("s2b1", "s4b2"):
        sub = _extract_checked(net, table, space.validate({**space.sample(3), "out": out}), z, x)
        tower = by_stride[net.stride]["cls"].chosen()[0].chosen()
        assert torch.equal(sub.cls_tower[0].pointwise.weight, tower.pointwise.weight)


def test_residual_tower_layers(tiny_space):
    """``dsconv`` with ``residual: true``: shape-keeping tower layers add their input before the ReLU
    (a layer with a zeroed BatchNorm is then the 'skip' choice); extraction, costs and fusion agree."""
    from lighttrack_nas.cost import CostTable
    from lighttrack_nas.deploy import fuse
    from lighttrack_nas.space import SearchSpace

    spec = tiny_space.to_dict()
    spec["settings"].update(head_share_kernels=["dsconv"], head_share_widths=True)
    spec["ops"].update(k3={"type": "dsconv", "kernel": 3, "residual": True},
                       k5={"type": "dsconv", "kernel": 5, "residual": True})
    space = SearchSpace.from_dict(spec)
    torch.manual_seed(0)
    net = build_supernet(space)
    tower = net.towers["reg"].candidates["256"].shared
    assert not tower[0].candidates["k5"].shared.residual  # neck channels -> tower width
    layer = tower[1].candidates["k5"].shared
    assert layer.residual
    z, x = _inputs(net)
    net.train()
    for seed in range(3):
        net.set_arch(space.sample(seed))
        net(z, x)
    net.eval()
    feature = torch.rand(2, 64, 6, 6)
    with torch.no_grad():
        assert not torch.equal(layer(feature), feature)
        saved = {k: v.clone() for k, v in layer.bn.state_dict().items()}
        layer.bn.weight.zero_()
        layer.bn.bias.zero_()
        assert torch.equal(layer(feature), feature)
        layer.width = 32  # as a 128-wide tower slice sets it
        assert torch.equal(layer(feature[:, :32], kernel=3), feature[:, :32])
        layer.width = None
        layer.bn.load_state_dict(saved)
    table = CostTable(net)
    arch = space.validate({**space.sample(4), "cls_w": 128, "reg_w": 192, "reg.1": "k3", "reg.2": "k5"})
    sub = _extract_checked(net, table, arch, z, x)
    assert sub.reg_tower[1].residual and sub.reg_tower[1].depthwise.weight.shape[-1] == 3
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(sub(z, x), fuse(sub)(z, x)))


def test_backbone_activations(tiny_space):
    """``settings.stem_activation`` and the mbconv ops' ``act`` set the backbone's activation (Swish as
    published, ReLU6 in the tiny space); subnets and the fused inference form keep it; unknown names
    are refused with the allowed ones."""
    from lighttrack_nas.deploy import fuse
    from lighttrack_nas.models.ops import build_op
    from lighttrack_nas.space import SearchSpace

    assert any(isinstance(m, torch.nn.SiLU) for m in build_op({"type": "mbconv"}, 8, 8).modules())
    tiny_net = build_supernet(tiny_space)
    tiny = [*tiny_net.stem.modules(), *tiny_net.layers.modules()]
    assert any(isinstance(m, torch.nn.ReLU6) for m in tiny) and not any(isinstance(m, torch.nn.SiLU) for m in tiny)
    spec = tiny_space.to_dict()
    spec["settings"]["stem_activation"] = "hswish"
    for op in spec["ops"].values():
        if op["type"] == "mbconv":
            op["act"] = "hswish"
    space = SearchSpace.from_dict(spec)
    torch.manual_seed(0)
    net = build_supernet(space)
    backbone = [*net.stem.modules(), *net.layers.modules()]
    assert not any(isinstance(m, (torch.nn.SiLU, torch.nn.ReLU6)) for m in backbone)
    assert sum(isinstance(m, torch.nn.Hardswish) for m in backbone) > len(net.layers)
    z, x = _inputs(net)
    net.train()
    for seed in range(3):  # BatchNorm statistics away from their initial values
        net.set_arch(space.sample(seed))
        net(z, x)
    sub = net.extract(space.sample(5)).eval()
    assert any(isinstance(m, torch.nn.Hardswish) for m in sub.backbone.modules())
    with torch.no_grad():
        assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(sub(z, x), fuse(sub)(z, x)))
    with pytest.raises(ValueError, match=r"op 'mbconv'.*act: activation 'gelu' is not one of \['hswish', 'relu'"):
        build_op({"type": "mbconv", "act": "gelu"}, 8, 8)
    spec["settings"]["stem_activation"] = "tanh"
    with pytest.raises(ValueError, match="stem_activation: activation 'tanh'"):
        build_supernet(SearchSpace.from_dict(spec))
