"""Runs a list of passes over a graph: recompiles, lints, times, dumps, and measures accuracy.

Exact passes run as listed; with `verify`, each must keep the graph's outputs on the example
inputs within rounding (`passes.accuracy`). A lossy pass runs only when the user named it
(`ctx.requested`), held to the accuracy budget by lossy_search.py: of its proposals, the largest
set whose loss of the user's metric (on held-out calibration inputs) fits the budget is kept,
and what it cost is recorded in the report.
"""
from __future__ import annotations

import logging
import time

import torch
import torch.fx as fx

from fastc.passes import Pass, PassContext, output_error
from fastc.passes.accuracy import EXACT_TOLERANCE

from .debug_dump import DebugDump
from .lossy_search import run_lossy
from .options import Options
from .pipeline import pipeline_for, requested_passes
from .report import GraphReport, PassRecord, count_ops

log = logging.getLogger("fastc")


class VerificationError(AssertionError):
    pass


def run_passes(gm: fx.GraphModule, passes: list[Pass], report: GraphReport | None = None,
               dump: DebugDump | None = None, *, ctx: PassContext | None = None,
               verify: bool = False) -> fx.GraphModule:
    ctx = ctx if ctx is not None else PassContext()
    batches = ctx.inputs_for_measuring() if verify else []
    reference = [_run(gm, b) for b in batches]
    for p in passes:
        if not p.exact and p.name not in ctx.requested:
            log.warning("fastc: lossy pass %s left out: lossy passes run only when named", p.spec())
            if report is not None:
                report.passes.append(PassRecord(p.spec(), 0, count_ops(gm), 0.0, exact=False,
                                                note="left out: lossy, not named by the user"))
            continue
        start = time.perf_counter()
        error, note = None, None
        if p.exact:
            rewrites = p.run(gm, ctx)
            gm.graph.lint()
            gm.recompile()
        else:
            lossy = run_lossy(gm, p, ctx)
            rewrites, error, note = lossy.rewrites, lossy.loss, lossy.note
            if not lossy.rewritten and (lossy.left_out or lossy.not_proposed):
                log.warning("fastc: lossy pass %s %s", p.spec(), lossy.note)
            if report is not None:
                report.lossy.append(lossy)
        ms = (time.perf_counter() - start) * 1e3
        if verify and p.exact and reference:
            error = max(output_error(ref, _run(gm, b)) for ref, b in zip(reference, batches))
            if error > EXACT_TOLERANCE:
                raise VerificationError(f"pass {p.spec()} changed the outputs: relative error {error:.3g} "
                                        f"(exact passes may change rounding only, {EXACT_TOLERANCE:g})")
        if verify and not p.exact:
            reference = [_run(gm, b) for b in batches]  # later exact passes keep what it made
        if report is not None:
            report.passes.append(PassRecord(p.spec(), rewrites, count_ops(gm), ms, error=error,
                                            exact=p.exact, note=note))
        log.debug("fastc: %s: %d rewrites, %d ops after, %.1f ms", p.spec(), rewrites, count_ops(gm), ms)
        if dump is not None:
            dump.graph(p.name, gm)
    return gm


def run_pipeline(gm: fx.GraphModule, opts: Options, report: GraphReport | None = None,
                 dump: DebugDump | None = None, *, ctx: PassContext | None = None) -> fx.GraphModule:
    ctx = ctx if ctx is not None else PassContext(target=opts.target)
    if not ctx.requested:
        ctx.requested = requested_passes(opts)
    return run_passes(gm, pipeline_for(opts), report, dump, ctx=ctx, verify=opts.verify)


def _run(gm: fx.GraphModule, inputs: list):
    with torch.no_grad():
        out = gm(*inputs)
    return [o.detach().clone() if isinstance(o, torch.Tensor) else o for o in out]
