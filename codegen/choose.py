"""Per kernel and problem size: ATen or generated code, whichever measures faster.

On a CPU, ATen's kernels (oneDNN, MKL, vectorized loops) are often hard to beat one op at a
time; generated code wins by fusing. Rather than guess, the first call of a kernel at a new
problem (its inputs' shapes and strides) runs the kernel's ATen ops and the generated code under
each candidate schedule a few times and keeps the fastest; later calls run the winner. Every
candidate computes the same values, so measuring never changes results beyond rounding.
"""
from __future__ import annotations

import threading
import time

import torch

from .schedule import candidate_schedules, heuristic_schedule

ATEN = "aten"


class Chooser:
    def __init__(self, *, autotune: bool = False, repeats: int = 3, dynamic: bool = True):
        self.autotune, self.repeats, self.dynamic = autotune, repeats, dynamic
        self.best: dict[tuple, object] = {}      # (kernel name, problem) -> ATEN or a Schedule
        self.timings: dict[tuple, list] = {}     # (kernel name, problem) -> [(ms, choice)]
        self._lock = threading.Lock()            # one measurement at a time (threads would skew it)

    def run(self, native, inputs, symbols, aten):
        """Outputs of the kernel on `inputs`: `native` (a NativeKernel) under the chosen schedule,
        or `aten()` (the kernel's ATen ops) when that measured faster."""
        key = (native.name, _problem(inputs) if self.dynamic else None)
        choice = self.best.get(key)
        if choice is None:
            with self._lock:
                choice = self.best.get(key) or self._measure(key, native, inputs, symbols, aten)
        if choice is ATEN:
            return aten()
        return native.run(*inputs, schedule=choice, symbols=symbols)

    def choice_text(self) -> list[str]:
        lines = []
        for (name, _problem_key), choice in self.best.items():
            times = ", ".join(f"{_label(c)} {ms:.3f} ms" for ms, c in self.timings.get((name, _problem_key), []))
            lines.append(f"{name}: {_label(choice)} ({times})")
        return lines

    def _candidates(self, native, inputs, symbols) -> list:
        sizes = native.problem_sizes(*inputs, symbols=symbols)
        if self.autotune:
            schedules = candidate_schedules(native.kind, sizes, target="cpu")
        else:
            schedules = [heuristic_schedule(native, sizes, target="cpu")] + native.schedules
        unique = []
        for s in schedules:
            if s not in unique:
                unique.append(s)
        return [ATEN] + unique

    def _measure(self, key, native, inputs, symbols, aten):
        results = []
        for candidate in self._candidates(native, inputs, symbols):
            if candidate is ATEN:
                run = aten
            else:
                def run(c=candidate):
                    return native.run(*inputs, schedule=c, symbols=symbols)
            prebuilt = candidate is ATEN or candidate in native.entries
            try:
                begin = time.perf_counter()
                run()  # warm up (and compile a schedule built on demand)
                first = (time.perf_counter() - begin) * 1e3
            except Exception:  # noqa: BLE001 - a schedule that fails to build is not a candidate
                if candidate is ATEN:
                    raise
                continue
            if prebuilt and results and first > 4 * results[0][0]:
                results.append((first, candidate))  # clearly slower: not worth repeating
                continue
            begin = time.perf_counter()
            for _ in range(self.repeats):
                run()
            results.append(((time.perf_counter() - begin) * 1e3 / self.repeats, candidate))
        results.sort(key=lambda r: r[0])
        self.timings[key] = results
        self.best[key] = results[0][1]
        return results[0][1]


def _label(choice) -> str:
    if choice is ATEN:
        return "ATen"
    return ("native, threads" + (f", tile {choice.tile}" if choice.tile else "")) if choice.parallel else "native, 1 thread"


def _problem(inputs) -> tuple:
    return tuple((tuple(x.shape), tuple(x.stride()), x.dtype) if isinstance(x, torch.Tensor) else x
                 for x in inputs)
