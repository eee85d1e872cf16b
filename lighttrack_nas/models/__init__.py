"""Models: the op registry, weight-sharing choice modules, the parts every tracker shares
(:mod:`.tracking`), the LightTrack supernet/subnets and the
stand-alone families (``cnn``: :class:`SiameseCNN`; ``vit``: :class:`ViTTracker`; ``hybrid``:
:class:`HybridTracker`)."""
from . import lighttrack, siamese_cnn, transformer  # noqa: F401  (register lighttrack, cnn, vit, hybrid)
from .build import (build_model, build_subnet, build_supernet, load_space, load_supernet, load_tracking_model,
                    read_checkpoint)
from .choice import LayerChoice, activate, freeze, op_choice, path_parameters
from .lighttrack import LightTrackSubnet, LightTrackSupernet
from .ops import build_op, register_op
from .registry import register_model
from .siamese_cnn import SiameseCNN
from .tracking import CachedTemplate, TrackingNet
from .transformer import HybridTracker, TransformerTracker, ViTTracker

__all__ = ["CachedTemplate", "HybridTracker", "LayerChoice", "LightTrackSubnet", "LightTrackSupernet", "SiameseCNN",
           "TrackingNet", "TransformerTracker", "ViTTracker", "activate", "build_model", "build_op", "build_subnet", "build_supernet", "freeze", "load_space", "load_supernet",
           "load_tracking_model", "op_choice", "path_parameters", "read_checkpoint", "register_model", "register_op"]
