"""Cost model: fvcore MACs/params (one multiply-add = one FLOP, per tracked frame) and a fast table."""
from .count import Cost, count_tracking_model, fvcore_macs
from .table import CostTable

__all__ = ["Cost", "CostTable", "count_tracking_model", "fvcore_macs"]
