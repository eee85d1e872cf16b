"""LightTrack-Mobile's frame graph in float32 and int8, and one frame's feed, for the issue-30 probes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import torch

from lighttrack_nas.deploy import fuse
from lighttrack_nas.deploy.onnx import create_session, export_branches
from lighttrack_nas.deploy.quantize import quantize_branches, random_crops
from lighttrack_nas.models import build_subnet, load_space

ROOT = Path(__file__).resolve().parents[2]


def mobile_frame_graphs() -> tuple[onnx.ModelProto, onnx.ModelProto, dict[str, np.ndarray]]:
    """(float32 frame graph, its int8 QDQ form, a feed: a random search crop and its template's cached
    features): the fused model with random weights, calibrated on 8 random crops (right for speed only)."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = build_subnet(load_space(ROOT / "search_spaces" / "lighttrack.yaml"), "lighttrack-mobile").eval()
    template, frame = export_branches(fuse(model))
    _, frame8 = quantize_branches(template, frame, random_crops(model.template_size, model.search_size, 8),
                                  keep_float=())   # every layer int8, as the probes measured it
    session = create_session(template)
    z = np.random.default_rng(0).normal(size=(1, 3, model.template_size, model.template_size)).astype(np.float32)
    x = np.random.default_rng(1).normal(size=(1, 3, model.search_size, model.search_size)).astype(np.float32)
    return frame, frame8, {"x": x, **dict(zip([o.name for o in session.get_outputs()], session.run(None, {"z": z})))}
