"""Shared fixtures: the LightTrack spaces (loading is cheap; supernets are built per module)."""
import os
from pathlib import Path

# Micro workloads gain nothing from intra-op threads, and on a busy machine every parallel region
# waits for its slowest thread: one thread keeps the suite fast and its timings stable. Set before
# torch is imported; subprocesses (tools run by the tests) inherit it.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest
import yaml

from lighttrack_nas.models import load_space

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def space():
    return load_space(ROOT / "search_spaces" / "lighttrack.yaml")


@pytest.fixture(scope="session")
def tiny_space():
    return load_space(ROOT / "search_spaces" / "lighttrack_tiny.yaml")


MICRO_SETTINGS = {"template_size": 32, "search_size": 64, "stem_channels": 8, "ds_channels": 8,
                  "backbone_width_mult": 0.25, "neck_channels": 16, "head_width_mult": 0.125}


@pytest.fixture(scope="session")
def micro_config(tmp_path_factory):
    """A micro experiment: 32/64 crops, a handful of channels, 12 iterations of batch 4."""
    root = tmp_path_factory.mktemp("micro")
    cfg = {"space": str(ROOT / "search_spaces" / "lighttrack_tiny.yaml"), "space_settings": MICRO_SETTINGS,
           "seed": 3, "device": "cpu",
           "data": {"root": str(root / "data"), "max_gap": 5, "workers": 0,
                    "splits": {"train": {"sequences": 3, "frames": 8, "size": [96, 64], "seed": 1},
                               "val": {"sequences": 2, "frames": 8, "size": [96, 64], "seed": 2}}},
           "train": {"epochs": 2, "iters_per_epoch": 6, "batch_size": 4, "lr": {"warmup_epochs": 1},
                     "freeze_backbone_epochs": 1, "checkpoint_every": 3, "log_every": 2}}
    path = root / "micro.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
