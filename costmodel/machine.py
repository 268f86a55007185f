"""Names the machine a measurement was taken on (for reports, benchmarks and the cost model).

- `cpu_name()`, `describe()`: one line for a human.
- `fingerprint()`: what a cost model is told about the machine (cores, torch's threads, vector ISA,
  cache sizes, OS and architecture), from /proc/cpuinfo and /sys where Linux has them and from
  `platform` elsewhere (then flags and caches are unknown: False and 0).
- `machine_id()`: a short stable name of the kind of machine ("AMD EPYC 9R14 / 2 cpus / avx512");
  two machines with the same CPU model, core count and vector ISA share it, so timings taken on
  either train one model.
"""
from __future__ import annotations

import copy
import functools
import os
import platform
import time
from pathlib import Path

import torch

CACHE_DIR = Path("/sys/devices/system/cpu/cpu0/cache")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "avx512f", "fma", "neon", "asimd", "sve")


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


def fingerprint() -> dict:
    """This machine, as plain JSON-ready values (a fresh copy each call; read once per process):
    cpu, logical_cores, usable_cores (this process's affinity), torch_threads; ISA flags
    (sse4_2, avx, avx2, avx512f, fma, neon, asimd, sve) and vector_bits (512 with AVX-512, 256 with
    AVX, 128 with SSE4.2 or NEON, else 0); caches [{level, type, size}] and l1d_bytes, l2_bytes,
    l3_bytes (cpu0's; 0 where unknown); os, arch."""
    return copy.deepcopy(_fingerprint())


def machine_id() -> str:
    """"<cpu> / <usable cores> cpus / <widest vector ISA>", e.g. "AMD EPYC 9R14 / 2 cpus / avx512"."""
    m = _fingerprint()
    return f"{m['cpu']} / {m['usable_cores']} cpus / {_isa_name(m)}"


@functools.lru_cache(maxsize=1)
def _fingerprint() -> dict:
    flags = _cpu_flags()
    caches = _caches()
    sizes = {(c["level"], c["type"]): c["size"] for c in caches}
    out = {
        "cpu": cpu_name(),
        "logical_cores": os.cpu_count() or 1,
        "usable_cores": _usable_cores(),
        "torch_threads": torch.get_num_threads(),
        **{flag: flag in flags for flag in ISA_FLAGS},
        "caches": caches,
        "l1d_bytes": sizes.get((1, "Data"), 0),
        "l2_bytes": sizes.get((2, "Unified"), sizes.get((2, "Data"), 0)),
        "l3_bytes": sizes.get((3, "Unified"), sizes.get((3, "Data"), 0)),
        "os": platform.system(),
        "arch": platform.machine(),
    }
    out["vector_bits"] = (512 if out["avx512f"] else 256 if out["avx"] or out["avx2"] else
                          128 if out["sse4_2"] or out["neon"] or out["asimd"] else 0)
    return out


def _usable_cores() -> int:
    """The cores this process may run on (its affinity, where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _isa_name(m: dict) -> str:
    for flag, name in (("avx512f", "avx512"), ("avx2", "avx2"), ("avx", "avx"), ("sve", "sve"),
                       ("asimd", "neon"), ("neon", "neon"), ("sse4_2", "sse4.2")):
        if m.get(flag):
            return name
    return m.get("arch") or "unknown ISA"


def _cpu_flags() -> set[str]:
    """The flags (x86) or features (ARM) line of /proc/cpuinfo; empty where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _caches() -> list[dict]:
    """cpu0's caches from /sys: [{level, type ("Data", "Instruction", "Unified"), size (bytes)}],
    by level then type; empty where /sys does not say."""
    out = []
    try:
        for index in sorted(CACHE_DIR.glob("index*")):
            try:
                level = int((index / "level").read_text())
                kind = (index / "type").read_text().strip()
                size = _size((index / "size").read_text().strip())
            except (OSError, ValueError):
                continue
            out.append({"level": level, "type": kind, "size": size})
    except OSError:
        return []
    return sorted(out, key=lambda c: (c["level"], c["type"]))


def _size(text: str) -> int:
    """Bytes of "48K", "1024K", "32M" or "1G" (sysfs's format)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text and text[-1].upper() in units:
        return int(text[:-1]) * units[text[-1].upper()]
    return int(text)


class OthersBusy:
    """Within `with`: how many cores other processes kept busy (`cores`, a float), from the
    machine's busy time in /proc/stat less this process's CPU time, over the wall time. None
    where /proc/stat is missing or the window was too short to tell (under MIN_WINDOW_S: the
    kernel counts in ticks of 10 ms). A timing taken while `cores` is well above 0 on a machine
    with few cores is not this candidate's time but its share of a contended machine."""

    MIN_WINDOW_S = 0.2

    def __init__(self):
        self.cores: float | None = None

    def __enter__(self) -> "OthersBusy":
        self._start = (time.perf_counter(), time.process_time(), _busy_seconds())
        return self

    def __exit__(self, *exc) -> None:
        wall0, own0, busy0 = self._start
        wall, own, busy = time.perf_counter() - wall0, time.process_time() - own0, _busy_seconds()
        if busy is None or busy0 is None or wall < self.MIN_WINDOW_S:
            self.cores = None
        else:
            self.cores = max(0.0, (busy - busy0) - own) / wall


def _busy_seconds() -> float | None:
    """Seconds all CPUs spent busy since boot (not idle, not waiting for I/O), or None."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")
