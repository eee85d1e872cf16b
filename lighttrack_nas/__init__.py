"""lighttrack-nas: one-shot NAS for light-weight single-object trackers."""

__version__ = "0.1.0"
