"""The tracker runtime shared by every model family (LightTrack inference)."""
from .tracker import Timing, Tracker, TrackerConfig, tracker_settings

__all__ = ["Timing", "Tracker", "TrackerConfig", "tracker_settings"]
