"""The accuracy harness: what does a fastc pass pipeline cost on a model with trained weights?

    report = measure("digits-cnn", "prune-magnitude{fraction=0.5},recalibrate-batchnorm")
    print(report.text()); report.to_json()

measure() captures the model as one frozen inference graph (frozen_graph.py), evaluates it,
then for each seed runs the pipeline over a copy through fastc's pass manager and evaluates the
result. Every pass named in the spec counts as named by the user, so lossy passes run; the pass
manager measures each one's relative L2 output error on the calibration inputs (and keeps the
largest set of its rewrites within `accuracy_budget`). Calibration inputs are a fixed slice of the training inputs, never the
evaluation split. The report holds the metrics before and after (mean and spread over seeds),
the weights the graph holds (elements, nonzero, bytes) before and after, and per pass its
rewrites and output error.
"""
from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

from fastc.ir.constants import copy_graph, drop_unused_constants
from fastc.pass_manager import run_passes
from fastc.passes import AccuracyCheck, Pass, PassContext, RelativeError, parse_pipeline
from fastc.report import GraphReport

from . import zoo
from .frozen_graph import GraphModel, capture, weight_stats

DEFAULT_CALIBRATION_SAMPLES = 64


@dataclass
class MetricSummary:
    mean: float
    std: float
    values: list[float]

    @classmethod
    def of(cls, values: list[float]) -> "MetricSummary":
        return cls(statistics.fmean(values), statistics.pstdev(values) if len(values) > 1 else 0.0, values)


@dataclass
class Report:
    model: str
    passes: str                       # the pipeline with every option but seed ("" for none)
    metric: str                       # the primary metric
    higher_is_better: bool | None
    seeds: list[int]
    before: dict[str, float]
    after: dict[str, MetricSummary]
    weights_before: dict
    weights_after: dict               # from the first seed's rewritten graph
    #: Per pass of the first seed: {"pass", "exact", "rewrites", "error" (of a lossy pass: the
    #: relative L2 output error it added, on the calibration inputs),
    #: "note" (left out, undone)}.
    pass_costs: list[dict] = field(default_factory=list)
    calibration_samples: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def change(self, metric: str | None = None) -> float:
        """Mean after minus before for a metric (the primary one by default)."""
        m = metric or self.metric
        return self.after[m].mean - self.before[m]

    def to_json(self) -> dict:
        d = asdict(self)
        d["change"] = {m: self.change(m) for m in self.before}
        return d

    def json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2)

    def text(self) -> str:
        n = len(self.seeds)
        lines = [f"model {self.model}   passes {self.passes or '(none)'}   seeds {self.seeds}   "
                 f"calibration {self.calibration_samples} samples",
                 f"  {'metric':<14}{'before':>12}{'after':>12}{'± std':>10}{'change':>11}"]
        for m, before in self.before.items():
            a = self.after[m]
            mark = "*" if m == self.metric else " "
            lines.append(f"  {m + mark:<14}{before:>12.4f}{a.mean:>12.4f}{a.std:>10.4f}{self.change(m):>+11.4f}")
        wb, wa = self.weights_before, self.weights_after
        lines.append(f"  {'weights':<14}{wb['weights']:>12,}{wa['weights']:>12,}")
        lines.append(f"  {'nonzero':<14}{wb['nonzero_weights']:>12,}{wa['nonzero_weights']:>12,}")
        lines.append(f"  {'weight bytes':<14}{wb['bytes']:>12,}{wa['bytes']:>12,}")
        for cost in self.pass_costs:
            error = (f"output error {cost['error']:.3g}" if cost["error"] is not None
                     else "exact" if cost["exact"] else "error not measured")
            lines.append(f"  pass {cost['pass']}: {cost['rewrites']} rewrites, {error}"
                         + (f" ({cost['note']})" if cost["note"] else ""))
        direction = {True: "higher is better", False: "lower is better", None: ""}[self.higher_is_better]
        lines.append(f"  * primary metric ({direction}); std over {n} seed{'s' if n > 1 else ''}; "
                     f"{self.seconds:.1f}s")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def measure(model: str | nn.Module, passes: str | list[Pass] = "", *,
            eval_fn: Callable[[nn.Module], dict] | None = None,
            calibration: int = DEFAULT_CALIBRATION_SAMPLES, calibration_data: torch.Tensor | None = None,
            seeds=(0,), metric: str | None = None, higher_is_better: bool | None = None,
            accuracy_budget: float | None = None) -> Report:
    """Measure the pass pipeline `passes` (a spec such as "prune-magnitude{fraction=0.5}", or
    Pass objects) on a model.

    model: a reference model name (see zoo.REFERENCE) or an nn.Module, which needs eval_fn
    (model -> dict of metrics; the first key is the primary metric unless `metric` names one) and
    calibration_data (inputs from its training data: the graph is captured on them).
    calibration: how many calibration samples the passes get (the first training inputs).
    seeds: one run per seed; each sets the `seed` option of the passes that have one (and seeds
    torch). Metrics are reported as mean and std over the runs.
    accuracy_budget: the largest relative L2 output error each lossy pass may add (see
    fastc.passes.metrics); each keeps the largest set of its rewrites within it. None: no limit.
    """
    start = time.time()
    pipeline = parse_pipeline(passes) if isinstance(passes, str) else list(passes)
    if isinstance(model, str):
        spec = zoo.reference(model)
        name, base = model, zoo.load(model)
        eval_fn = eval_fn or spec.evaluate
        metric = metric or spec.metric
        higher_is_better = spec.higher_is_better if higher_is_better is None else higher_is_better
    elif isinstance(model, nn.Module):
        if eval_fn is None:
            raise ValueError("measure() of an nn.Module needs eval_fn (model -> dict of metrics); "
                             f"or pass a reference model name ({', '.join(zoo.REFERENCE)})")
        if calibration_data is None:
            raise ValueError("measure() of an nn.Module needs calibration_data: inputs from its training "
                             "data (not the evaluation split), which the graph is captured and the passes "
                             "calibrated on")
        spec, name, base = None, type(model).__name__, model
    else:
        raise TypeError(f"model must be a reference model name or an nn.Module, not {type(model).__name__}")
    if isinstance(calibration, bool) or not isinstance(calibration, int) or calibration < 1:
        raise ValueError(f"calibration must be a number of samples of at least 1, got {calibration!r}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")

    calib = calibration_data[:calibration] if spec is None else spec.calibration(base, calibration)
    # A size-1 dimension would be fixed in the graph: trace on two samples.
    example = calib[:2] if len(calib) >= 2 else torch.cat([calib, calib])
    graph = capture(base, (example,))
    before = eval_fn(GraphModel(graph, base))
    metric = metric or next(iter(before))
    if metric not in before:
        raise ValueError(f"metric '{metric}' is not reported by eval_fn (valid: {', '.join(before)})")

    if accuracy_budget is not None:
        AccuracyCheck(RelativeError([[calib]]), accuracy_budget)  # checks the number before any work
    per_seed, weights_after, costs = [], None, None
    for seed in seeds:
        torch.manual_seed(seed)
        gm = copy_graph(graph)
        record = GraphReport(0, "inference")
        ctx = PassContext(target="aten", example_inputs=[calib], calibration_inputs=[[calib]],
                          held_out_inputs=[[calib]], accuracy=AccuracyCheck(RelativeError([[calib]]), accuracy_budget),
                          requested=frozenset(p.name for p in pipeline))
        run_passes(gm, [_with_seed(p, seed) for p in pipeline], record, ctx=ctx)
        drop_unused_constants(gm)
        per_seed.append(eval_fn(GraphModel(gm, base)))
        if costs is None:
            weights_after = weight_stats(gm)
            costs = [{"pass": _shown(p), "exact": r.exact, "rewrites": r.rewrites, "error": r.error,
                      "note": r.note} for p, r in zip(pipeline, record.passes)]
    after = {m: MetricSummary.of([r[m] for r in per_seed]) for m in before}
    return Report(model=name, passes=",".join(_shown(p) for p in pipeline), metric=metric,
                  higher_is_better=higher_is_better, seeds=seeds, before=before, after=after,
                  weights_before=weight_stats(graph), weights_after=weights_after, pass_costs=costs,
                  calibration_samples=len(calib), seconds=time.time() - start)


def _shown(p: Pass) -> str:
    """p as `fastc-opt -p` takes it, every option spelled out but `seed` (the seeds say it)."""
    options = [f"{f.name}={str(v).lower() if isinstance(v, bool) else v}"
               for f in dataclasses.fields(p) if f.name != "seed" for v in [getattr(p, f.name)]]
    return p.name + ("{" + ",".join(options) + "}" if options else "")


def _with_seed(p: Pass, seed: int) -> Pass:
    fields = {f.name for f in dataclasses.fields(p)}
    return dataclasses.replace(p, seed=seed) if "seed" in fields else p
