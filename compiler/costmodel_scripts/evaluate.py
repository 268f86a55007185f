"""`fastc costmodel eval DIR [--model MODEL.json | --train] [--json] [--plots DIR]`: how well
the cost model orders each kernel's candidates on models it was not trained on
(fastc.costmodel.evaluate), as a table, and with --json as one JSON object on the last line of
standard output."""
from __future__ import annotations

import json
import math

from fastc.command_input import CommandError

from . import dataset
from .train import single_target

#: The metrics --json always has (fastc.costmodel.evaluate documents each).
KEYS = ("kendall_tau", "top1", "top5", "p90_regret", "mape", "abstain", "kernels", "candidates",
        "tuning_s_exhaustive", "tuning_s_model", "tuning_speedup", "predict_ms_per_kernel")


def evaluate(path: str, *, model: str | None = None, machine: str | None = None, as_json: bool = False,
             plots: str | None = None, train: bool = False) -> int:
    from fastc.costmodel import evaluate as metrics

    if train and model is not None:
        raise CommandError("eval: give --model or --train, not both")
    data = dataset.only_machine(dataset.read([path]), machine, [path])
    target = single_target(data, [path])
    cost_model, how = (None, "one trained without each held-out model (--train)") if train else load(model, target)
    print(f"{path}: {how}")
    if cost_model is not None:
        seen = sorted(set(cost_model.header["trained_on"]["models"]) & set(data.column("model").to_pylist()))
        if seen:
            print(f"note: the model was trained on {len(seen)} of these models ({', '.join(seen)}): "
                  "those are not held out")
    try:
        result = metrics.evaluate(data, holdout="model", model=cost_model, target=target)
    except ValueError as e:  # rows it cannot evaluate on, said why
        raise CommandError(f"{path}: {e}") from None
    if not result["groups"]:
        raise CommandError(f"{path}: nothing to evaluate: no kernel has two timed candidates")
    print(metrics.table(result))
    if plots:
        written = metrics.plots(result, data, plots)
        print(f"plots: {', '.join(map(str, written))}")
    if as_json:
        print(json.dumps(scalars(result), sort_keys=True))  # the last line
    return 0


def load(path: str | None, target: str):
    """(the model to evaluate or None: one trained per held-out model; how it was picked)."""
    from fastc.costmodel.learned import CostModel, CostModelError
    if path is not None:
        try:
            return CostModel.load(path), f"model {path}"
        except CostModelError as e:
            raise CommandError(str(e)) from None
    from fastc.costmodel.default import default_model_path
    from fastc.costmodel.machine import machine_id
    from fastc.costmodel.mlir_features import FEATURE_VERSION
    shipped = default_model_path(target)
    if not shipped.exists():
        return None, f"no shipped model for {target} ({shipped}): one trained without each held-out model"
    try:
        model = CostModel.load(str(shipped))
        model.check(target, machine_id(), FEATURE_VERSION)
    except CostModelError as e:
        return None, f"the shipped model is not used ({e}): one trained without each held-out model"
    return model, f"the shipped model {shipped}"


def scalars(result: dict) -> dict:
    """The numbers and strings of `result` (per-kernel records left out), NaN as null, with
    every key of KEYS."""
    out = {k: None for k in KEYS}
    for key, value in result.items():
        if isinstance(value, bool) or value is None or isinstance(value, str):
            out[key] = value
        elif isinstance(value, (int, float)) or hasattr(value, "item"):
            try:
                value = value.item() if hasattr(value, "item") else value
            except (ValueError, TypeError):
                continue  # an array, not a number
            out[key] = None if isinstance(value, float) and math.isnan(value) else value
    return out
