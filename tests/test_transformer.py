"""The transformer families (vit, hybrid): specs, attention with uneven heads, the tracking interface,
OSTrack's loss, training and loading through the shared tools."""
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lighttrack_nas.config import ConfigError
from lighttrack_nas.cost import count_tracking_model
from lighttrack_nas.data.sources import load_split
from lighttrack_nas.models import build_model, load_tracking_model
from lighttrack_nas.models.transformer import Attention
from lighttrack_nas.tracker import Tracker
from lighttrack_nas.train.baseline import BaselineTrainer
from lighttrack_nas.train.loss import gaussian_heatmap, ostrack_loss
from lighttrack_nas.config import load_experiment

MICRO_VIT = {"family": "vit", "template_size": 32, "search_size": 64, "patch": 16, "embed_dim": 16, "depth": 2,
             "heads": 2, "mlp_ratio": 2, "cls_tower": [8], "reg_tower": [8]}
MICRO_HYBRID = {"family": "hybrid", "template_size": 32, "search_size": 64, "embed_dim": 16, "encoder_depth": 1,
                "decoder_depth": 1, "heads": 2, "mlp_ratio": 2,
                "widths": {"stem": 8, "stages": [{"stride": 2, "out": 8, "blocks": [[8]]},
                                                 {"stride": 2, "out": 16, "blocks": [[16]]},
                                                 {"stride": 2, "out": 16, "blocks": [[16]]}],
                           "cls_tower": [8], "reg_tower": [8]}}


def _inputs(batch: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, 32, 32, generator=g), torch.randn(batch, 3, 64, 64, generator=g)


@pytest.mark.parametrize("spec", [MICRO_VIT, MICRO_HYBRID], ids=["vit", "hybrid"])
def test_spec_round_trip_and_the_cached_template_path(spec):
    torch.manual_seed(0)
    model = build_model(spec).eval()
    again = build_model(model.spec())
    again.load_state_dict(model.state_dict())
    assert again.spec() == model.spec()
    z, x = _inputs()
    with torch.no_grad():
        cls, reg = model(z, x)
        model.template(z)
        cached = model.track(x)
        other = again.eval()(z, x)
    assert cls.shape == (2, 1, 4, 4) and reg.shape == (2, 4, 4, 4) and model.score_size == 4 and model.stride == 16
    assert (reg >= 0).all()
    for a, b in ((cls, cached[0]), (reg, cached[1]), (cls, other[0]), (reg, other[1])):
        torch.testing.assert_close(a, b)
    cost = count_tracking_model(model)
    assert cost.macs > cost.template_macs > 0 and cost.params == sum(p.numel() for p in model.parameters())


def test_attention_with_uneven_heads_computes_per_head_softmax_attention():
    torch.manual_seed(0)
    for dims in ([4, 4], [2, 6, 4]):
        attn = Attention(12, dims, scale=0.3).eval()
        x = torch.randn(2, 5, 12)
        q, k, v = attn.qkv(x).chunk(3, dim=-1)
        heads, start = [], 0
        for d in dims:
            sl = slice(start, start + d)
            weights = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) * 0.3, dim=-1)
            heads.append(weights @ v[..., sl])
            start += d
        torch.testing.assert_close(attn(x), attn.proj(torch.cat(heads, dim=-1)))
        attn.gate = torch.nn.Parameter(torch.ones(sum(dims)))  # a unit soft mask changes nothing
        torch.testing.assert_close(attn(x), attn.proj(torch.cat(heads, dim=-1)))


def test_spec_errors_name_the_field():
    with pytest.raises(ValueError, match="heads"):
        build_model({**MICRO_VIT, "heads": 3})  # 16 is not divisible by 3
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['depht'\]"):
        build_model({**MICRO_VIT, "depht": 2})
    with pytest.raises(ValueError, match=r"model.layers\[0\]"):
        build_model({**MICRO_VIT, "layers": [{"head_dims": [8, 0], "mlp": 8}]})
    with pytest.raises(ValueError, match="model.cls_tower"):
        build_model({**MICRO_VIT, "cls_tower": []})
    with pytest.raises(ValueError, match="multiples of patch"):
        build_model({**MICRO_VIT, "search_size": 72})
    with pytest.raises(ValueError, match="model.widths"):
        build_model({**MICRO_HYBRID, "widths": {**MICRO_HYBRID["widths"], "neck": 8}})


def test_ostrack_loss_rewards_the_right_box_and_peak():
    boxes = torch.tensor([[12.0, 10.0, 36.0, 38.0]])  # centre (24, 24): cell (1, 1) of the 4x4 map at stride 16
    heatmap = gaussian_heatmap(boxes, 64, 4, 16)
    assert heatmap[0, 1, 1] == 1.0 and heatmap[0].max() == 1.0 and (heatmap[0] < 1).sum() == 15
    points = 8 + 16 * torch.arange(4.0)
    px, py = points.view(1, 4), points.view(4, 1)
    ltrb = torch.stack([(px - 12).expand(4, 4), (py - 10).expand(4, 4), (36 - px).expand(4, 4),
                        (38 - py).expand(4, 4)]).unsqueeze(0).clamp(min=0)
    good_cls = torch.full((1, 1, 4, 4), -8.0)
    good_cls[0, 0, 1, 1] = 8.0
    good = ostrack_loss(good_cls, ltrb, boxes, 64, 16)
    assert good["giou"] < 1e-5 and good["l1"] < 1e-6 and good["cls"] < 0.01
    bad = ostrack_loss(-good_cls, ltrb * 0.5, boxes, 64, 16)
    assert bad["cls"] > 10 * good["cls"] and bad["giou"] > 0.3 and bad["l1"] > 0.01
    assert good["loss"] == pytest.approx(float(good["cls"] + 2 * good["giou"] + 5 * good["l1"]), rel=1e-6)


def test_a_vit_trains_with_its_own_loss_and_tracks_from_its_checkpoint(micro_config, tmp_path):
    cfg = yaml.safe_load(Path(micro_config).read_text())
    cfg["model"] = MICRO_VIT
    cfg["train"].update({"epochs": 1, "iters_per_epoch": 3, "batch_size": 2, "freeze_backbone_epochs": 0,
                         "checkpoint_every": 3, "log_every": 1, "optimizer": "adamw"})
    path = tmp_path / "vit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    trainer = BaselineTrainer(load_experiment(path), tmp_path / "run", progress=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    checkpoint = trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    log = (tmp_path / "run" / "log.jsonl").read_text().splitlines()
    assert len(log) == 3 and all(key in log[0] for key in ('"giou"', '"l1"', '"cls"'))  # OSTrack's loss parts
    model = load_tracking_model(checkpoint, None)
    assert model.spec() == build_model(MICRO_VIT).spec()
    sequence = load_split(load_experiment(path)["data"], "val")[0]
    tracker = Tracker(model)
    tracker.init(sequence.load_frame(0), sequence.boxes[0])
    box, score = tracker.update(sequence.load_frame(1))
    assert np.isfinite(box).all() and box[2] > 0 and 0.0 <= score <= 1.0


def test_a_vit_trains_only_at_the_search_size_it_tracks_at(micro_config, tmp_path):
    cfg = yaml.safe_load(Path(micro_config).read_text())
    cfg["model"] = MICRO_VIT
    cfg["train"]["search_size"] = 32   # its positional embeddings are laid out for 64 / 16 = 4 x 4 tokens
    path = tmp_path / "vit.yaml"
    path.write_text(yaml.safe_dump(cfg))
    with pytest.raises(ConfigError, match="tracks at search_size 64 and is not fully convolutional"):
        BaselineTrainer(load_experiment(path), tmp_path / "run", progress=False)
