"""`fastc explain --roofline MODEL`: each kernel and each kind of ATen op against the machine's
roofline, so a user sees which kernels are far from what the machine allows and why (compute or
memory bound).

    rows, peak = roofline_model("digits-cnn", batch=8)
    print(roofline_text(rows, peak))

Per row: FLOPs and bytes moved per forward (fastc.ir.work, from the planned graph), arithmetic
intensity (FLOPs per byte), the measured time per forward (fastc.profiling: under torch.profiler,
the faster half of the profiled calls), the achieved GFLOP/s and GB/s, and the fraction of the
roof at that intensity: min(peak FLOP/s, intensity x peak bandwidth). A kernel at 0.05 of its
roof has room; one near 1 does not, and only moving less (fusing: a block kernel) helps it.

The machine's peak is measured once by a small probe and kept in fastc's cache directory
(`machine_peak`): FLOP/s as the best of a few fp32 1024 x 1024 x 1024 products through ATen
and through oneDNN, the faster of the two (the attainable peak of this machine's
GEMM libraries at torch's thread count, not the datasheet's), and
bandwidth as the best of a few copies of 64 MiB (bytes read plus written per second). A cached
entry is checked before use (this machine, these threads, finite positive numbers) and probed
again otherwise.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

log = logging.getLogger("fastc")

PEAK_FILE = "machine-peak.json"
PROBE_VERSION = 2


@dataclass(frozen=True)
class Peak:
    flops: float        # FLOP/s
    bandwidth: float    # bytes/s
    machine: str
    threads: int
    version: int = PROBE_VERSION

    def roof(self, intensity: float) -> float:
        """Attainable FLOP/s at `intensity` FLOPs per byte."""
        return min(self.flops, intensity * self.bandwidth)


@dataclass
class Row:
    name: str           # "g0.k3_reduction" or "aten::mm"
    kind: str           # "kernel" (a planned kernel, however it ran) or "aten"
    how: str            # how the kernel ran ("native", "ATen", ...), "" for ATen ops
    calls: int          # per forward
    flops: int
    bytes: int
    ms: float           # per forward

    @property
    def intensity(self) -> float:
        return self.flops / self.bytes if self.bytes else math.inf

    @property
    def gflops(self) -> float:
        return self.flops / self.ms / 1e6 if self.ms > 0 else 0.0

    @property
    def gbytes(self) -> float:
        return self.bytes / self.ms / 1e6 if self.ms > 0 else 0.0

    def of_roof(self, peak: Peak) -> float:
        """The fraction of the attainable FLOP/s (or, with no FLOPs, of the bandwidth) reached."""
        if self.ms <= 0:
            return 0.0
        if self.flops == 0:
            return self.gbytes * 1e9 / peak.bandwidth
        return self.gflops * 1e9 / peak.roof(self.intensity)


# -- the machine -------------------------------------------------------------------------------
def machine_peak(refresh: bool = False, cache: Path | None = None) -> Peak:
    """This machine's measured peak (see the module docstring), from the cache when it holds a
    valid entry for this machine and thread count, else probed (and stored)."""
    from fastc.costmodel import machine

    described, threads = machine.describe(), torch.get_num_threads()
    path = _peak_path(cache)
    if path is not None and not refresh:
        found = _read_peak(path, described, threads)
        if found is not None:
            return found
    peak = Peak(_probe_flops(), _probe_bandwidth(), described, threads)
    if path is not None:
        _write_peak(path, peak)
    return peak


def _peak_path(cache: Path | None) -> Path | None:
    if cache is not None:
        return Path(cache) / PEAK_FILE
    from fastc.codegen.cache import cache_dir
    root = cache_dir()
    return None if root is None else root / PEAK_FILE


def _read_peak(path: Path, described: str, threads: int) -> Peak | None:
    """The cached entry for this machine and thread count, or None (missing, another machine,
    or damaged: then a warning, and the caller probes again)."""
    if not path.exists():
        return None
    try:
        entries = json.loads(path.read_text())
        entry = entries.get(f"{described}|{threads}") if isinstance(entries, dict) else None
        if entry is None:
            return None
        peak = Peak(**entry)
        ok = (peak.machine == described and peak.threads == threads and peak.version == PROBE_VERSION
              and all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in (peak.flops, peak.bandwidth)))
        if not ok:
            raise ValueError("entry does not describe this machine, or holds no usable numbers")
        return peak
    except (OSError, ValueError, TypeError) as e:
        log.warning("fastc: ignoring the cached machine peak in %s (%s); measuring again", path, e)
        return None


def _write_peak(path: Path, peak: Peak) -> None:
    try:
        entries = json.loads(path.read_text()) if path.exists() else {}
        if not isinstance(entries, dict):
            entries = {}
    except (OSError, ValueError):
        entries = {}
    entries[f"{peak.machine}|{peak.threads}"] = asdict(peak)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        tmp.replace(path)
    except OSError as e:
        log.info("fastc: could not cache the machine peak in %s (%s)", path, e)


def _best_seconds(fn, repeats: int) -> float:
    fn()
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _probe_flops(n: int = 1024, repeats: int = 5) -> float:
    """The faster of ATen's fp32 GEMM and oneDNN's (on a weight in oneDNN's format), where torch
    has oneDNN: on AMD CPUs ATen's (MKL) reaches about half of what oneDNN does."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    best = _best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    linear = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if torch.backends.mkldnn.is_available() and linear is not None:
        try:
            packed = b.t().contiguous().to_mkldnn()
            best = min(best, _best_seconds(lambda: linear(a, packed, None, "none", [], ""), repeats))
        except RuntimeError as e:  # noqa: PERF203 - oneDNN cannot run it here: ATen's number stands
            log.debug("fastc: oneDNN peak probe failed: %s", e)
    return 2 * n ** 3 / best


def _probe_bandwidth(mib: int = 64, repeats: int = 5) -> float:
    src = torch.ones(mib * 2 ** 20 // 4)
    dst = torch.empty_like(src)
    return 2 * src.numel() * 4 / _best_seconds(lambda: dst.copy_(src), repeats)


# -- rows --------------------------------------------------------------------------------------
def roofline_rows(profile, reports) -> list[Row]:
    """Rows for a profile (fastc.profiling.Profile) of a model whose graphs are `reports`: one
    per planned kernel that was timed, one per kind of ATen op outside kernels (summed over
    graphs), slowest first. Rows without static sizes (no FLOP count) are left out."""
    work = {}
    aten: dict[str, list[int]] = {}
    for r in reports:
        for w in r.work:
            if w["kind"] in ("kernel", "library"):
                work[(r.graph_id, w["name"])] = w
            else:
                total = aten.setdefault(w["name"], [0, 0])
                total[0] += w["flops"]
                total[1] += w["bytes"]
    rows = []
    for k in profile.kernels:
        w = work.get((k.graph, k.name))
        if w is not None:
            how = k.how if w["kind"] == "kernel" else _library_how(reports, k.graph, k.name)
            rows.append(Row(f"g{k.graph}.{k.name}", "kernel", how, k.calls, w["flops"], w["bytes"], k.ms))
    for op in profile.ops:
        if op.name in aten:
            flops, moved = aten[op.name]
            rows.append(Row(op.name, "aten", "", op.calls, flops, moved, op.ms))
    return sorted(rows, key=lambda row: -row.ms)


def _library_how(reports, graph: int, name: str) -> str:
    """How a library call ran: "library: <the implementation picked>" (oneDNN, block-kernel, ...)."""
    for r in reports:
        if r.graph_id == graph and name in r.decisions:
            return f"library: {r.decisions[name]}"
    return "library"


def roofline_text(rows: list[Row], peak: Peak, top: int = 0) -> str:
    lines = [f"machine peak (measured): {peak.flops / 1e9:.1f} GFLOP/s fp32 (GEMM), "
             f"{peak.bandwidth / 1e9:.1f} GB/s (copy), {peak.threads} threads; ridge at "
             f"{peak.flops / peak.bandwidth:.1f} FLOP/byte",
             f"{'name':44s} {'how':24s} {'calls':>5s} {'MFLOP':>9s} {'KB':>9s} {'FLOP/B':>7s} "
             f"{'ms':>8s} {'GFLOP/s':>8s} {'GB/s':>7s} {'of roof':>7s} bound"]
    shown = rows[:top] if top else rows
    for r in shown:
        bound = "memory" if r.intensity * peak.bandwidth < peak.flops else "compute"
        lines.append(f"{r.name[:44]:44s} {r.how[:24]:24s} {r.calls:5d} {r.flops / 1e6:9.3f} {r.bytes / 1e3:9.1f} "
                     f"{min(r.intensity, 9999):7.2f} {r.ms:8.3f} {r.gflops:8.2f} {r.gbytes:7.2f} "
                     f"{r.of_roof(peak):7.3f} {bound}")
    if top and len(rows) > top:
        lines.append(f"... {len(rows) - top} more rows")
    total_ms = sum(r.ms for r in rows)
    total_flops = sum(r.flops for r in rows)
    lines.append(f"total over the rows: {total_flops / 1e6:.2f} MFLOP in {total_ms:.3f} ms per forward "
                 f"({total_flops / total_ms / 1e6 if total_ms else 0:.2f} GFLOP/s, "
                 f"{total_flops / total_ms / 1e6 / (peak.flops / 1e9) if total_ms else 0:.3f} of the FLOP peak)")
    return "\n".join(lines)


def roofline_plot(rows: list[Row], peak: Peak, path: str | Path, title: str = "") -> Path:
    """A log-log roofline plot (PNG): the roof, and each row as a point at its intensity and
    achieved GFLOP/s, sized by its time; the slowest rows labelled."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [r for r in rows if r.flops > 0 and r.ms > 0 and r.bytes > 0]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    lo = min([r.intensity for r in points] + [0.01]) / 2
    hi = max([r.intensity for r in points] + [peak.flops / peak.bandwidth * 4]) * 2
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [peak.roof(x) / 1e9 for x in xs], color="black", label="roof (measured peak)")
    total = sum(r.ms for r in points) or 1.0
    for kind, color in (("kernel", "tab:blue"), ("aten", "tab:orange")):
        chosen = [r for r in points if r.kind == kind]
        ax.scatter([r.intensity for r in chosen], [r.gflops for r in chosen],
                   s=[20 + 400 * r.ms / total for r in chosen], alpha=0.6, color=color,
                   label="fastc kernels" if kind == "kernel" else "ATen ops (per kind)")
    for r in sorted(points, key=lambda r: -r.ms)[:8]:
        ax.annotate(r.name.split(".")[-1].removeprefix("aten::"), (r.intensity, r.gflops), fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(title or "roofline")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def roofline_model(name: str, target: str = "cpu", batch: int | None = None, calls: int = 20,
                   refresh_peak: bool = False, options: dict | None = None):
    """(rows, peak, profile) for zoo model `name` compiled by fastc for `target` (with `options`)."""
    from .profiling import compile_model, profile_compiled
    from .report import REPORTS
    model, compiled, inputs, first = compile_model(name, target, batch, options)
    profile = profile_compiled(name, model, compiled, inputs, first, target=target, batch=batch, calls=calls)
    return roofline_rows(profile, REPORTS[first:]), machine_peak(refresh=refresh_peak), profile
