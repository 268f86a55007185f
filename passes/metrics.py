"""What a lossy rewrite costs: the accuracy metric and the budget it is held to.

The user picks the metric (`accuracy_metric`) and the largest loss of it they accept
(`accuracy_budget`). Losses are measured on held-out calibration inputs, never on those the
passes fitted their statistics to:

- "agreement": top-1 agreement of the rewritten graph's main output with the original's (argmax
  over the last dimension, every other position counted); the original agrees with itself, so
  the loss is 1 - agreement. The main output is the graph's first floating-point output whose
  last dimension has more than one entry (class or token scores).
- "relative-error": the relative L2 error ||new - original|| / ||original|| over every
  floating-point output and held-out batch; the loss is that error.
- a callable `metric(model) -> float`, higher is better, where `model` takes the user's
  inputs (a calibration tuple) and returns the graph's outputs; the loss is
  metric(original) - metric(rewritten). It raises, or returns something other than a finite
  number, and that is an error naming the option.

A budget of 0 keeps the graph exact: nothing lossy is kept, even a rewrite that measures no loss.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx

METRICS = ("agreement", "relative-error")


class MetricError(ValueError):
    """The metric could not be measured (its callable failed, or the graph has nothing to measure)."""


def run_graph(gm: fx.GraphModule, batch: list) -> list:
    with torch.no_grad():
        out = gm(*batch)
    out = out if isinstance(out, (list, tuple)) else [out]
    return [o.detach() if isinstance(o, torch.Tensor) else o for o in out]


class Metric(ABC):
    name: str

    def start(self, gm: fx.GraphModule) -> float:
        """The metric of the original graph (before any rewrite); metrics that compare with it
        keep its outputs here."""
        return self.value(gm)

    @abstractmethod
    def value(self, gm: fx.GraphModule) -> float:
        ...

    @abstractmethod
    def loss(self, before: float, after: float) -> float:
        ...


class _AgainstOriginal(Metric):
    """A metric comparing outputs with the original graph's on the held-out batches."""

    def __init__(self, held_out: list[list]):
        if not held_out:
            raise MetricError("no held-out calibration inputs to measure the metric on")
        self.held_out = held_out
        self.reference: list[list] | None = None

    def start(self, gm: fx.GraphModule) -> float:
        self.reference = [run_graph(gm, b) for b in self.held_out]
        return self.value(gm)


class Agreement(_AgainstOriginal):
    name = "agreement"

    def value(self, gm: fx.GraphModule) -> float:
        agree = total = 0
        for ref, batch in zip(self.reference, self.held_out):
            new = run_graph(gm, batch)
            i = main_output(ref)
            if not isinstance(new[i], torch.Tensor) or new[i].shape != ref[i].shape:
                return 0.0
            a, b = ref[i].argmax(-1), new[i].argmax(-1)
            agree += int((a == b).sum())
            total += a.numel()
        return agree / total

    def loss(self, before: float, after: float) -> float:
        return before - after


def main_output(outputs: list) -> int:
    for i, o in enumerate(outputs):
        if isinstance(o, torch.Tensor) and o.is_floating_point() and o.dim() >= 1 and o.shape[-1] > 1:
            return i
    raise MetricError("accuracy_metric='agreement' needs a floating-point output whose last dimension "
                      "has more than one entry (class or token scores), and this graph has none; use "
                      "accuracy_metric='relative-error'")


class RelativeError(_AgainstOriginal):
    name = "relative-error"

    def value(self, gm: fx.GraphModule) -> float:
        diff = norm = 0.0
        for ref, batch in zip(self.reference, self.held_out):
            new = run_graph(gm, batch)
            if len(new) != len(ref):
                return math.inf
            for r, n in zip(ref, new):
                if not (isinstance(r, torch.Tensor) and r.is_floating_point()):
                    continue
                if not isinstance(n, torch.Tensor) or n.shape != r.shape:
                    return math.inf
                d = (n.double() - r.double()).pow(2).sum().item()
                if not math.isfinite(d):
                    return math.inf
                diff += d
                norm += r.double().pow(2).sum().item()
        return math.sqrt(diff / norm) if norm > 0 else math.sqrt(diff)

    def loss(self, before: float, after: float) -> float:
        return after - before


class UserMetric(Metric):
    """The user's `metric(model) -> float` (higher is better) over a model made from the graph."""

    def __init__(self, fn: Callable, model_of: Callable[[fx.GraphModule], Callable]):
        self.fn, self.model_of = fn, model_of
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def value(self, gm: fx.GraphModule) -> float:
        try:
            with torch.no_grad():
                v = self.fn(self.model_of(gm))
        except Exception as e:
            raise MetricError(f"fastc option accuracy_metric: the metric {self.name!r} raised "
                              f"{type(e).__name__}: {e}") from e
        if isinstance(v, torch.Tensor) and v.numel() == 1:
            v = v.item()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise MetricError(f"fastc option accuracy_metric: the metric {self.name!r} returned {v!r} "
                              "(expected a finite number, higher is better)")
        return float(v)

    def loss(self, before: float, after: float) -> float:
        return before - after


@dataclass
class AccuracyCheck:
    """A metric and the largest loss of it the lossy passes together may cause (None: no limit,
    the cost reported). The loss is always against the graph before the first lossy pass."""
    metric: Metric
    budget: float | None = None
    #: The metric of the graph before the first lossy pass (set by `baseline_of`).
    baseline: float | None = None

    def baseline_of(self, gm: fx.GraphModule) -> float:
        """The original graph's metric: measured on the first call (the graph before any lossy
        pass), remembered after."""
        if self.baseline is None:
            self.baseline = self.metric.start(gm)
        return self.baseline

    def loss(self, gm: fx.GraphModule) -> tuple[float, float]:
        """(the metric of `gm`, its loss against the original graph)."""
        value = self.metric.value(gm)
        return value, self.metric.loss(self.baseline, value)

    def __post_init__(self):
        b = self.budget
        if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))
                              or not (b >= 0 and math.isfinite(b))):
            raise ValueError(f"accuracy budget {b!r} is not valid (expected a finite number >= 0)")

    def within(self, loss: float) -> bool:
        if self.budget is None:
            return True
        return self.budget > 0 and loss <= self.budget
