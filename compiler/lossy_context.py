"""What a graph's lossy passes are handed: calibration batches (fit and held out) as the graph's
inputs, and the metric and budget (passes/metrics.py) they are held to."""
from __future__ import annotations

import dataclasses
import logging
from typing import Callable

import torch.fx as fx

from fastc.passes import AccuracyCheck, Agreement, PassContext, RelativeError, UserMetric

from .calibration import GraphCalibration
from .options import Options
from .pipeline import lossy_passes
from .report import GraphReport, PassRecord, count_ops

log = logging.getLogger("fastc")


def lossy_context(ctx: PassContext, gm: fx.GraphModule, opts: Options, calibration,
                  keep: list[int], report: GraphReport) -> Options:
    """Fills ctx for the lossy passes; returns the options to compile with (without the lossy
    passes, each recorded as left out with the reason, when no calibration reaches this graph)."""
    if not isinstance(calibration, GraphCalibration):
        reason = calibration if isinstance(calibration, str) else \
            "no calibration inputs reach this graph (it runs the weights as inputs, not frozen)"
        for p in lossy_passes(opts):
            report.passes.append(PassRecord(p.spec(), 0, count_ops(gm), 0.0, exact=False,
                                            note=f"left out: {reason}"))
        log.warning("fastc: graph %d: lossy passes %s left out: %s", report.graph_id, opts.lossy, reason)
        return dataclasses.replace(opts, lossy=None)
    ctx.calibration_inputs = [[b[i] for i in keep] for b in calibration.fit]
    ctx.held_out_inputs = [[b[i] for i in keep] for b in calibration.held_out]
    ctx.requested = frozenset(p.name for p in lossy_passes(opts))
    metric = opts.accuracy_metric
    if metric == "agreement":
        m = Agreement(ctx.held_out_inputs)
    elif metric == "relative-error":
        m = RelativeError(ctx.held_out_inputs)
    else:
        m = UserMetric(metric, lambda g: _model(g, calibration.to_inputs, keep))
    ctx.accuracy = AccuracyCheck(m, opts.accuracy_budget)
    return opts


def _model(g: fx.GraphModule, to_inputs: Callable[[tuple], list], keep: list[int]) -> Callable:
    """The graph as a callable taking the user's inputs (what a metric callable is handed)."""
    def model(*args):
        inputs = to_inputs(args)
        out = list(g(*[inputs[i] for i in keep]))
        return out[0] if len(out) == 1 else tuple(out)
    return model
