"""MeasuredChoices: run every candidate of a kernel at its first call per problem, keep the fastest.

On a CPU, ATen's kernels (oneDNN, MKL, vectorized loops) are often hard to beat one op at a
time, and generated code wins by fusing; with max-autotune, the best block sizes depend on the
machine. Rather than guess, each candidate (ATen, or generated code under a schedule) runs once
to warm up (and build), then is timed (CUDA events on a GPU, wall time otherwise); those not
clearly slower than the best are timed again in interleaved rounds, and each candidate's fastest
run counts (a stall of a shared machine then skews one sample, not the choice); the fastest
candidate is kept by the caller for later calls at that problem. Every candidate computes the same values,
so measuring never changes results beyond rounding.

Every timing is appended to the caller's `records` with the kernel's features, the candidate, the
time and the machine: the data a cost model trains on. What nothing is measured for (fusion,
products, the schedule before any call, what to build up front) is `rules`' call.
"""
from __future__ import annotations

import functools
import threading
import time
from typing import Callable, Sequence

import torch
from torch.utils._python_dispatch import _disable_current_modes

from fastc.ir.schedule import Schedule
from .machine import describe

from .choices import Choices, ChoosesKernels
from .features import ATEN, KernelFeatures, candidate_record, candidate_text
from .heuristic import HeuristicChoices

# One measurement at a time in the process: kernels timed in two threads at once (or two graphs)
# would skew each other's timings.
_MEASURING = threading.RLock()

# A candidate whose first timed run takes this many times the best so far is not run again.
CLEARLY_SLOWER = 4


class MeasuredChoices(ChoosesKernels):
    def __init__(self, rules: Choices | None = None, repeats: int = 5):
        self.rules = rules if rules is not None else HeuristicChoices()
        self.repeats = repeats

    def __repr__(self) -> str:
        return f"MeasuredChoices(rules={self.rules!r}, repeats={self.repeats})"

    def choose(self, k: KernelFeatures, candidates: Sequence, run: Callable | None = None,
               records: list | None = None):
        if len(candidates) == 1:
            return candidates[0]
        if run is None:
            return None  # measured at the kernel's first call
        # Outside any Python dispatch mode: a compiled graph's first call runs under
        # aot_autograd's (it checks custom ops' aliasing), which sends every ATen op through
        # Python and made ATen candidates look 4-10x slower than they run afterwards. The
        # measured runs' results are thrown away; the caller computes the kernel's values again
        # under whatever modes are active.
        with _MEASURING, _disable_current_modes():
            return self._measure(k, candidates, run, records)

    def _measure(self, k: KernelFeatures, candidates: Sequence, run: Callable, records: list | None):
        cuda = k.device == "cuda"
        samples, failed, first_error = [], [], None  # samples: [candidate, [ms per run]]
        for candidate in candidates:
            try:
                run(candidate)  # warm up (and build a schedule compiled on demand)
                samples.append([candidate, [_time(run, candidate, 1, cuda)]])
            except Exception as e:  # noqa: BLE001 - a schedule that fails to build or run is not a candidate
                if candidate == ATEN:
                    raise  # ATen is the reference: its failure is the model's error
                failed.append((candidate, f"{type(e).__name__}: {e}"[:300]))
                first_error = first_error or e
        if not samples:
            raise first_error
        # The candidates not clearly slower run `repeats - 1` more times, in interleaved rounds
        # (a stall of the machine hits one round, not one candidate's every run); each keeps its
        # fastest run: noise only ever adds time.
        best = min(t[0] for _, t in samples)
        close = [s for s in samples if s[1][0] <= CLEARLY_SLOWER * best]
        for _ in range(self.repeats - 1):
            for entry in close:
                entry[1].append(_time(run, entry[0], 1, cuda))
        timings = [(candidate, min(times), len(times)) for candidate, times in samples]
        chosen = min(timings, key=lambda t: t[1])[0]
        if records is not None:
            common = {**k.record(), "machine": machine()}
            for candidate, ms, runs in timings:
                records.append({**common, "candidate": candidate_record(candidate), "ms": ms, "runs": runs,
                                "chosen": candidate is chosen})
            for candidate, error in failed:
                records.append({**common, "candidate": candidate_record(candidate), "ms": None, "runs": 0,
                                "chosen": False, "error": error})
        return chosen


def _time(run: Callable, candidate, n: int, cuda: bool) -> float:
    """Milliseconds per run of `candidate`, over `n` runs."""
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(n):
            run(candidate)
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end) / n
    begin = time.perf_counter()
    for _ in range(n):
        run(candidate)
    return (time.perf_counter() - begin) * 1e3 / n


@functools.lru_cache(maxsize=None)
def machine() -> str:
    """The machine measurements are taken on: CPU, cores, torch threads, GPU."""
    return describe()


def summary(records: list[dict]) -> list[str]:
    """One line per kernel and problem measured: the candidate chosen, then every time taken."""
    groups: dict = {}
    for r in list(records):
        groups.setdefault((r["name"], repr(r["inputs"])), []).append(r)
    lines = []
    for (name, _), rs in groups.items():
        chosen = next((r for r in rs if r["chosen"]), None)
        if chosen is None:
            continue
        timed = sorted((r for r in rs if r["ms"] is not None), key=lambda r: r["ms"])
        times = ", ".join(f"{_text(r['candidate'])} {r['ms']:.3f} ms" for r in timed)
        lines.append(f"{name}: {_text(chosen['candidate'])} ({times})")
    return lines


def _text(candidate) -> str:
    if isinstance(candidate, str):  # ATen, or a library op's implementation
        return candidate
    return candidate_text(ATEN if candidate == ATEN else Schedule(**candidate))
