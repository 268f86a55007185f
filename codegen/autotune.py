"""`mode="max-autotune"`: measure candidate schedules of each generated kernel, keep the fastest.

The first call of a kernel at a new problem size (its input shapes and strides) runs every
schedule from `schedule.candidate_schedules` and times it (CUDA events on a GPU, wall time
otherwise); later calls at that size run the winner. Measuring never changes results: every
candidate computes the same values, and the last run's outputs are the ones returned.
"""
from __future__ import annotations

import threading
import time

import torch

from .schedule import candidate_schedules


class Autotuner:
    def __init__(self, repeats: int = 5):
        self.repeats = repeats
        self.best: dict[tuple, object] = {}          # (kernel, problem) -> Schedule
        self.timings: dict[tuple, list] = {}         # (kernel, problem) -> [(ms, Schedule)]
        self._lock = threading.Lock()                # one measurement at a time (threads would skew it)

    def run(self, kernel, inputs, symbols=None):
        key = (kernel.name, _problem(inputs))
        schedule = self.best.get(key)
        if schedule is not None:
            return kernel.run(*inputs, schedule=schedule, symbols=symbols)
        with self._lock:
            return self._measure(key, kernel, inputs, symbols)

    def _measure(self, key, kernel, inputs, symbols):
        if key in self.best:
            return kernel.run(*inputs, schedule=self.best[key], symbols=symbols)
        sizes = kernel.problem_sizes(*inputs, symbols=symbols)
        results, out = [], None
        for candidate in candidate_schedules(kernel.spec.kind, sizes):
            try:
                out = kernel.run(*inputs, schedule=candidate, symbols=symbols)  # compile and warm up
                results.append((self._time(kernel, inputs, candidate, symbols), candidate))
            except Exception:  # noqa: BLE001 - a candidate the compiler rejects is not measured
                continue
        if not results:
            return kernel.run(*inputs, symbols=symbols)
        results.sort(key=lambda r: r[0])
        self.timings[key] = results
        self.best[key] = results[0][1]
        return kernel.run(*inputs, schedule=results[0][1], symbols=symbols)

    def _time(self, kernel, inputs, schedule, symbols) -> float:
        cuda = any(isinstance(x, torch.Tensor) and x.is_cuda for x in inputs)
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(self.repeats):
                kernel.run(*inputs, schedule=schedule, symbols=symbols)
            end.record()
            torch.cuda.synchronize()
            return start.elapsed_time(end) / self.repeats
        begin = time.perf_counter()
        for _ in range(self.repeats):
            kernel.run(*inputs, schedule=schedule, symbols=symbols)
        return (time.perf_counter() - begin) * 1e3 / self.repeats


def _problem(inputs) -> tuple:
    return tuple((tuple(x.shape), tuple(x.stride()), x.dtype) if isinstance(x, torch.Tensor) else x
                 for x in inputs)
