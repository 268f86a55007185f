"""Names the machine a measurement was taken on (for reports and benchmarks)."""
from __future__ import annotations

import os
import platform

import torch


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def describe() -> str:
    text = f"{cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text
