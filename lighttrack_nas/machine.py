"""The machine a measurement ran on: CPU model, cores, threads and library versions."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np
import torch


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's description."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info() -> dict[str, str | int]:
    """A record to store beside every timing."""
    return {"cpu": cpu_model(), "cores": os.cpu_count() or 0, "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__}


def describe_machine() -> str:
    info = machine_info()
    return (f"{info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} thread(s), "
            f"Python {info['python']}")
