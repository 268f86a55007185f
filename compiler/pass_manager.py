"""Runs a list of passes over a graph: recompiles, lints, times, dumps, and measures accuracy.

Exact passes run as listed; with `verify`, each must keep the graph's outputs on the example
inputs within rounding (`passes.accuracy`). A lossy pass runs only when the user named it
(`ctx.requested`); its cost, the output error of the graph so far against the captured graph on
the calibration (or example) inputs, is measured and recorded next to its rewrite count, and a
pass that takes the error past the accuracy budget is undone. Both use one comparison.
"""
from __future__ import annotations

import copy
import logging
import time

import torch
import torch.fx as fx

from fastc.passes import Pass, PassContext, output_error
from fastc.passes.accuracy import EXACT_TOLERANCE

from .debug_dump import DebugDump
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
    measuring = verify or any(not p.exact for p in passes)
    batches = ctx.inputs_for_measuring() if measuring else []
    reference = [_run(gm, b) for b in batches]
    for p in passes:
        if not p.exact and p.name not in ctx.requested:
            log.warning("fastc: lossy pass %s left out: lossy passes run only when named", p.spec())
            if report is not None:
                report.passes.append(PassRecord(p.spec(), 0, count_ops(gm), 0.0, exact=False,
                                                note="left out: lossy, not named by the user"))
            continue
        saved = None if p.exact else _snapshot(gm)
        start = time.perf_counter()
        rewrites = p.run(gm, ctx)
        gm.graph.lint()
        gm.recompile()
        ms = (time.perf_counter() - start) * 1e3
        error, note = None, None
        if (verify or not p.exact) and reference:
            error = max(output_error(ref, _run(gm, b)) for ref, b in zip(reference, batches))
        if not p.exact:
            budget = ctx.accuracy_budget
            if budget is not None and error is not None and error > budget.max_error:
                _restore(gm, saved)
                note = f"undone: output error {error:.3g} over the budget {budget.max_error:g}"
                log.warning("fastc: lossy pass %s %s", p.spec(), note)
                rewrites = 0
            elif error is None:
                note = "cost not measured: no example or calibration inputs"
        elif verify and error is not None and error > EXACT_TOLERANCE:
            raise VerificationError(f"pass {p.spec()} changed the outputs: relative error {error:.3g} "
                                    f"(exact passes may change rounding only, {EXACT_TOLERANCE:g})")
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


def _snapshot(gm: fx.GraphModule):
    """What undoing a pass needs: the graph and the module's tensors (shared, not copied: passes
    never change a constant in place)."""
    return copy.deepcopy(gm.graph), dict(gm.named_buffers(recurse=False)), dict(gm.named_parameters(recurse=False))


def _restore(gm: fx.GraphModule, saved) -> None:
    graph, buffers, parameters = saved
    for name, _ in list(gm.named_buffers(recurse=False)) + list(gm.named_parameters(recurse=False)):
        if name not in buffers and name not in parameters:
            delattr(gm, name)
    for name, t in buffers.items():
        if not hasattr(gm, name):
            gm.register_buffer(name, t, persistent=False)
    for name, t in parameters.items():
        if not hasattr(gm, name):
            gm.register_parameter(name, t)
    gm.graph = graph
    gm.recompile()
