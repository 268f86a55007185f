"""The accuracy harness: what does a model rewrite cost?

    report = measure("digits-cnn", transforms.get("prune-20"))
    print(report.text()); report.to_json()

measure() evaluates the model, applies the transform to a fresh copy once per seed (seeding torch
first, so stochastic transforms are reproducible), evaluates each result, and reports the metrics
before and after (mean and spread over seeds), parameter counts (total and nonzero) and weight
bytes (nbytes of parameters and buffers). A transform that asks for calibration data gets a fixed
slice of the training inputs, never the evaluation split.
"""
import copy
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
from torch import nn

DEFAULT_CALIBRATION_SAMPLES = 64


def weight_stats(model: nn.Module) -> dict:
    """{"parameters", "nonzero_parameters", "bytes"}; bytes counts parameters and buffers once each."""
    params = list(model.parameters())
    seen, total_bytes = set(), 0
    for t in [*params, *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total_bytes += t.nbytes
    return {"parameters": sum(p.numel() for p in params),
            "nonzero_parameters": sum(int(torch.count_nonzero(p)) for p in params),
            "bytes": total_bytes}


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
    transform: str
    metric: str                       # the primary metric
    higher_is_better: bool | None
    seeds: list[int]
    before: dict[str, float]
    after: dict[str, MetricSummary]
    weights_before: dict
    weights_after: dict               # from the first seed's transformed model
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
        lines = [f"model {self.model}   transform {self.transform}   seeds {self.seeds}"
                 + (f"   calibration {self.calibration_samples} training samples" if self.calibration_samples else ""),
                 f"  {'metric':<14}{'before':>12}{'after':>12}{'± std':>10}{'change':>11}"]
        for m, before in self.before.items():
            a = self.after[m]
            mark = "*" if m == self.metric else " "
            lines.append(f"  {m + mark:<14}{before:>12.4f}{a.mean:>12.4f}{a.std:>10.4f}{self.change(m):>+11.4f}")
        wb, wa = self.weights_before, self.weights_after
        lines.append(f"  {'parameters':<14}{wb['parameters']:>12,}{wa['parameters']:>12,}")
        lines.append(f"  {'nonzero':<14}{wb['nonzero_parameters']:>12,}{wa['nonzero_parameters']:>12,}")
        lines.append(f"  {'weight bytes':<14}{wb['bytes']:>12,}{wa['bytes']:>12,}")
        direction = {True: "higher is better", False: "lower is better", None: ""}[self.higher_is_better]
        lines.append(f"  * primary metric ({direction}); std over {n} seed{'s' if n > 1 else ''}; "
                     f"{self.seconds:.1f}s")
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def _name_of(obj) -> str:
    return getattr(obj, "name", None) or getattr(obj, "__name__", None) or type(obj).__name__


def measure(model: str | nn.Module, transform: Callable, *, eval_fn: Callable[[nn.Module], dict] | None = None,
            calibration: bool | int | None = None, calibration_data: torch.Tensor | None = None,
            seeds=(0,), metric: str | None = None, higher_is_better: bool | None = None) -> Report:
    """Measure `transform` (model -> model, or (model, calibration inputs) -> model) on a model.

    model: a reference model name (see catalog.MODELS) or an nn.Module with eval_fn (model -> dict
    of metrics; the first key is the primary metric unless `metric` names one).
    calibration: False, True (DEFAULT_CALIBRATION_SAMPLES) or a sample count; None (default) means
    True exactly when the transform has needs_calibration set. For a named model the samples are
    the first training inputs; for a module pass calibration_data.
    seeds: run the transform once per seed on a fresh copy; metrics are reported as mean and std.
    """
    from . import catalog

    start = time.time()
    if isinstance(model, str):
        spec = catalog.get(model)
        name, base = model, catalog.load(model)
        eval_fn = eval_fn or spec.evaluate
        metric = metric or spec.metric
        higher_is_better = spec.higher_is_better if higher_is_better is None else higher_is_better
    elif isinstance(model, nn.Module):
        if eval_fn is None:
            raise ValueError("measure() of an nn.Module needs eval_fn (model -> dict of metrics); "
                             f"or pass a reference model name ({', '.join(catalog.MODELS)})")
        spec, name, base = None, type(model).__name__, model
    else:
        raise TypeError(f"model must be a reference model name or an nn.Module, not {type(model).__name__}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")

    if calibration is None:
        calibration = bool(getattr(transform, "needs_calibration", False))
    calib = None
    if calibration is not False:
        n = DEFAULT_CALIBRATION_SAMPLES if calibration is True else int(calibration)
        if calibration_data is not None:
            calib = calibration_data[:n]
        elif spec is not None:
            calib = spec.calibration(base, n)
        else:
            raise ValueError("calibration was requested for an nn.Module: pass calibration_data "
                             "(training inputs, not the evaluation split)")

    before = eval_fn(base)
    metric = metric or next(iter(before))
    if metric not in before:
        raise ValueError(f"metric '{metric}' is not reported by eval_fn (valid: {', '.join(before)})")

    per_seed, weights_after = [], None
    for seed in seeds:
        torch.manual_seed(seed)
        candidate = copy.deepcopy(base)
        out = transform(candidate, calib) if calib is not None else transform(candidate)
        if not isinstance(out, nn.Module):
            raise TypeError(f"transform {_name_of(transform)} returned {type(out).__name__}, "
                            "expected the transformed nn.Module")
        per_seed.append(eval_fn(out))
        weights_after = weights_after or weight_stats(out)
    after = {m: MetricSummary.of([r[m] for r in per_seed]) for m in before}
    return Report(model=name, transform=_name_of(transform), metric=metric,
                  higher_is_better=higher_is_better, seeds=seeds, before=before, after=after,
                  weights_before=weight_stats(base), weights_after=weights_after,
                  calibration_samples=0 if calib is None else len(calib),
                  seconds=time.time() - start)
