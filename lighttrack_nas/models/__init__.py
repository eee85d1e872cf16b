"""Models: the op registry, weight-sharing choice modules, and the LightTrack supernet/subnets."""
from . import lighttrack  # noqa: F401  (registers the 'lighttrack' model)
from .build import build_subnet, build_supernet, load_space, load_supernet, load_tracking_model, read_checkpoint
from .choice import LayerChoice, activate, freeze, op_choice, path_parameters
from .lighttrack import LightTrackSubnet, LightTrackSupernet, TrackingNet
from .ops import build_op, register_op
from .registry import register_model

__all__ = ["LayerChoice", "LightTrackSubnet", "LightTrackSupernet", "TrackingNet", "activate", "build_op",
           "build_subnet", "build_supernet", "freeze", "load_space", "load_supernet", "load_tracking_model", "op_choice",
           "path_parameters", "read_checkpoint", "register_model", "register_op"]
