"""The tracker runtime shared by every model family (LightTrack inference)."""
from .tracker import Timing, Tracker, TrackerConfig

__all__ = ["Timing", "Tracker", "TrackerConfig"]
