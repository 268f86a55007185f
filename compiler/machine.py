"""Names the machine a measurement was taken on (for reports and benchmarks)."""
from __future__ import annotations

import os
import platform

import torch


def describe() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads)"
    if torch.cuda.is_available():
        text += f", GPU {torch.cuda.get_device_name()}"
    return text
