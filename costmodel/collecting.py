"""CollectingChoices: measure every candidate of every kernel, and keep one row per candidate.

The data a cost model trains on (`fastc costmodel collect`). Compiled with
`options={"target": "cpu", "mode": "max-autotune", "choices": CollectingChoices(rows=rows)}`, a
model's first call offers each kernel's every candidate (ATen and each schedule of the native CPU
space) to `choose`, which:

- asks the kernel for its features under each candidate (`k.describe(candidate)`, when the
  kernel offers it; the seconds spent are `features_s`); a schedule it cannot describe does not
  apply to the kernel (as for ModelChoices): its row says why, and it is not run;
- runs each candidate once to warm up (that run builds a schedule compiled on demand: its time
  less the median run is `build_s`), then `repeats` more times in interleaved rounds (a stall of
  a shared machine hits one round, not one candidate's every run), one measurement at a time in
  the process and outside any Python dispatch mode, as MeasuredChoices does;
- checks each candidate's values from its warm-up run against ATen's: a candidate that differs
  beyond rounding (a bug in a lowering) is not timed, nor ever chosen;
- appends one row per candidate to `rows`: median `ms`, fastest `ms_min`, `noise` (the
  interquartile range over the median), `runs`, `build_s`, `measure_s` (all the seconds its
  runs took), `others_busy` (cores other processes kept busy meanwhile: while above
  BUSY_CORES_MAX the rounds are taken again, and a kernel still contended after BUSY_ATTEMPTS
  is listed in `contended`), the features as `f.<name>`; a candidate that fails to build or
  run, or computes wrong values, gets `ms` None and its `error`;
- returns the fastest candidate (by median), so the model runs as well as measuring can make it.

Rows carry the kernel and its problem; the collecting driver adds the model, the machine and
the versions (fastc.costmodel_scripts). A kernel of the same kind, ops and problem as one already
measured by this object (a transformer's repeated layers) is not measured again: it gets the
first one's choice, and no rows (`repeated` counts them).

Everything else (fusion, products, the schedule before any call, what to build up front) is
`rules`' call: the collected kernels are those fastc's heuristics plan. So is the implementation
of a library op (kind "library"): no cost model ranks those.
"""
from __future__ import annotations

import hashlib
import json
import time
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils._python_dispatch import _disable_current_modes

from .choices import Choices, ChoosesKernels
from .features import ATEN, KernelFeatures, candidate_record
from .heuristic import HeuristicChoices
from .machine import OthersBusy
from .measured import _MEASURING, _time

#: Longest error text kept in a row.
ERROR_CHARS = 300
#: A kernel's timing rounds are taken again (after BUSY_WAIT_S, at most BUSY_ATTEMPTS in all)
#: while other processes kept more than this many cores busy (machine.OthersBusy): on a machine
#: of two cores, one busy core made threaded candidates 10x slower and serial ones no slower.
BUSY_CORES_MAX = 0.25
BUSY_ATTEMPTS = 3
BUSY_WAIT_S = 2.0


class CollectingChoices(ChoosesKernels):
    #: Offered every legal schedule of a kernel (codegen's candidate_schedules), in any mode.
    ranks_every_schedule = True

    def __init__(self, rows: list | None = None, repeats: int = 7, rules: Choices | None = None,
                 on_kernel: Callable[[KernelFeatures], None] | None = None):
        if repeats < 1:
            raise ValueError(f"CollectingChoices: repeats must be at least 1, got {repeats}")
        self.rows = rows if rows is not None else []
        self.repeats = repeats
        self.rules = rules if rules is not None else HeuristicChoices()
        self.on_kernel = on_kernel      # called after each kernel is measured (progress)
        self.repeated = 0               # kernels not measured again (same kind, ops and problem)
        self.failures: list[tuple[str, str]] = []   # (kernel, error) of kernels that raised
        self.contended: list[tuple[str, float]] = []  # (kernel, cores other processes used) timed busy
        self._chosen: dict[str, object] = {}        # signature -> the choice measured for it

    def __repr__(self) -> str:
        return f"CollectingChoices(repeats={self.repeats}, rules={self.rules!r}, rows={len(self.rows)})"

    def choose(self, k: KernelFeatures, candidates: Sequence, run: Callable | None = None,
               records: list | None = None):
        if k.kind == "library":
            return self.rules.choose(k, candidates, run, records)
        if run is None:
            return None  # measured at the kernel's first call, however many candidates
        signature = kernel_signature(k)
        earlier = self._chosen.get(signature)
        if earlier is not None and earlier in candidates:
            self.repeated += 1
            return earlier
        try:
            # Outside any Python dispatch mode: see MeasuredChoices.choose. Features too are
            # computed under the lock: that work would skew another thread's timings.
            with _MEASURING, _disable_current_modes():
                features = [self._features(k, c) for c in candidates]
                chosen, rows = self._measure(k, candidates, run, features)
        except Exception as e:
            # The caller runs this kernel as ATen from now on; the driver reports it.
            self.failures.append((k.name, _error_text(e)))
            raise
        self.rows.extend(rows)
        self._chosen[signature] = chosen
        if self.on_kernel is not None:
            self.on_kernel(k)
        return chosen

    def _features(self, k: KernelFeatures, candidate) -> tuple[dict, float, str | None]:
        """(features of `k` under `candidate`, seconds spent, error text or None)."""
        describe = getattr(k, "describe", None)
        if describe is None:
            return {}, 0.0, None
        begin = time.perf_counter()
        try:
            values = describe(candidate)
            if not isinstance(values, dict):
                raise TypeError(f"describe() returned a {type(values).__name__}, not a dict")
            values = {name: float(v) for name, v in values.items()}
        except Exception as e:  # noqa: BLE001 - the schedule does not apply to this kernel
            return {}, time.perf_counter() - begin, "not applicable: " + _error_text(e)
        return values, time.perf_counter() - begin, None

    def _measure(self, k: KernelFeatures, candidates: Sequence, run: Callable, features: list):
        """(the fastest candidate, one row per candidate)."""
        cuda = k.device == "cuda"
        first_s, times, errors = _warm_up(k, candidates, run, features)
        order = list(times)
        for attempt in range(BUSY_ATTEMPTS):
            if attempt:
                time.sleep(BUSY_WAIT_S)  # another process had the machine: wait, then time again
            for i in order:
                times[i] = []
            with OthersBusy() as busy:
                for round_ in range(self.repeats):
                    shift = round_ % len(order)  # each candidate goes first in turn
                    for i in order[shift:] + order[:shift]:
                        times[i].append(_time(run, candidates[i], 1, cuda))
            contended = busy.cores is not None and busy.cores > BUSY_CORES_MAX
            if not contended:
                break
        if contended:
            self.contended.append((k.name, busy.cores))
        chosen = min(times, key=lambda i: float(np.median(times[i])))
        common = {"kernel": k.name, "group": f"{k.name}/{kernel_signature(k)[:12]}", "kind": k.kind,
                  "target": k.target, "problem": problem_text(k)}
        rows = []
        for i, candidate in enumerate(candidates):
            values, features_s, features_error = features[i]
            row = {**common, "candidate": json.dumps(candidate_record(candidate), sort_keys=True),
                   "is_aten": candidate == ATEN, "features_s": features_s, "others_busy": busy.cores,
                   **_timing(times.get(i), first_s.get(i, 0.0)), "error": features_error or errors.get(i)}
            row.update({f"f.{name}": v for name, v in values.items()})
            rows.append(row)
        return candidates[chosen], rows


def _warm_up(k: KernelFeatures, candidates: Sequence, run: Callable, features: list):
    """Runs each candidate that applies once, ATen first: (seconds of each warm-up run,
    {index: []} of those to time, {index: error} of those that failed or computed values other
    than ATen's). Raises ATen's error, or the first error if no candidate ran."""
    first_s: dict[int, float] = {}
    times: dict[int, list[float]] = {}
    errors: dict[int, str] = {}
    first_error, reference = None, None
    for i in sorted(range(len(candidates)), key=lambda i: candidates[i] != ATEN):
        candidate = candidates[i]
        if features[i][2] is not None and candidate != ATEN:
            continue  # a schedule not described does not apply to this kernel
        begin = time.perf_counter()
        try:
            values = _tensors(run(candidate))  # builds a schedule compiled on demand
        except Exception as e:  # noqa: BLE001 - a schedule that fails is a row, not a candidate
            if candidate == ATEN:
                raise  # ATen is the reference: its failure is the model's error
            errors[i] = _error_text(e)
            first_error = first_error or e
        else:
            if candidate == ATEN:
                reference = [v.clone() for v in values]
            wrong = None if reference is None or candidate == ATEN else _difference(reference, values)
            if wrong is None:
                times[i] = []
            else:
                errors[i] = f"wrong values: {wrong} (a bug in the lowering of this schedule)"
        first_s[i] = time.perf_counter() - begin
    if not times:
        raise first_error or ValueError(f"kernel {k.name}: no candidate applies ({features[0][2]})")
    return first_s, times, errors


def _timing(times: list[float] | None, first_s: float) -> dict:
    """The timing columns of a candidate timed `times` (ms) after a warm-up of `first_s` seconds
    (None: it failed or was not run)."""
    if times is None:
        return {"ms": None, "ms_min": None, "noise": None, "runs": 0, "build_s": None, "measure_s": first_s}
    t = np.asarray(times)
    median = float(np.median(t))
    p25, p75 = np.percentile(t, [25, 75])
    return {"ms": median, "ms_min": float(t.min()), "noise": float((p75 - p25) / median) if median > 0 else 0.0,
            "runs": len(t), "build_s": max(0.0, first_s - median / 1e3), "measure_s": first_s + float(t.sum()) / 1e3}


def _tensors(values) -> list:
    """The tensors of a kernel's outputs (a tensor, or a tuple or list of them)."""
    items = values if isinstance(values, (tuple, list)) else [values]
    return [v for v in items if isinstance(v, torch.Tensor)]


def _difference(reference: list, values: list) -> str | None:
    """How `values` differ from `reference` (ATen's outputs) beyond rounding, or None."""
    if len(values) != len(reference):
        return f"{len(values)} outputs, ATen gives {len(reference)}"
    for n, (want, got) in enumerate(zip(reference, values)):
        if got.shape != want.shape:
            return f"output {n} has shape {tuple(got.shape)}, ATen's {tuple(want.shape)}"
        tolerance = 1e-2 if want.dtype in (torch.float16, torch.bfloat16) else 1e-3
        if want.is_floating_point() and not torch.allclose(got, want, rtol=tolerance, atol=tolerance, equal_nan=True):
            diff = (got.double() - want.double()).abs().nan_to_num(float("inf")).max().item()
            return f"output {n} differs from ATen's by up to {diff:.3g}"
        if not want.is_floating_point() and not torch.equal(got, want):
            return f"output {n} differs from ATen's"
    return None


def problem_text(k: KernelFeatures) -> str:
    """The problem `k` is at, as JSON: its sizes and its inputs' shapes, strides and dtypes."""
    inputs = [list(x) if isinstance(x, tuple) else x for x in k.inputs]
    return json.dumps({"sizes": k.sizes, "inputs": inputs}, sort_keys=True)


def kernel_signature(k: KernelFeatures) -> str:
    """A digest of what `k` computes at its problem: kind, ops, output dtype, problem. Two kernels
    of one model with the same signature (repeated layers) are measured once."""
    text = json.dumps([k.kind, sorted(k.op_counts.items()), k.dtype, problem_text(k)])
    return hashlib.sha1(text.encode()).hexdigest()


def _error_text(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:ERROR_CHARS]
