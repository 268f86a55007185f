"""Runs a list of passes over a graph: recompiles, lints, times, dumps and (optionally) verifies."""
from __future__ import annotations

import logging
import time

import torch
import torch.fx as fx

from fastc.passes import Pass

from .debug_dump import DebugDump
from .options import Options
from .pipeline import pipeline_for
from .report import GraphReport, PassRecord, count_ops

log = logging.getLogger("fastc")


class VerificationError(AssertionError):
    pass


def run_passes(gm: fx.GraphModule, passes: list[Pass], report: GraphReport | None = None,
               dump: DebugDump | None = None, verify_inputs: list | None = None) -> fx.GraphModule:
    reference = _run(gm, verify_inputs) if verify_inputs is not None else None
    for p in passes:
        start = time.perf_counter()
        rewrites = p.run(gm)
        gm.graph.lint()
        gm.recompile()
        ms = (time.perf_counter() - start) * 1e3
        if report is not None:
            report.passes.append(PassRecord(p.spec(), rewrites, count_ops(gm), ms))
        log.debug("fastc: %s: %d rewrites, %d ops after, %.1f ms", p.spec(), rewrites, count_ops(gm), ms)
        if dump is not None:
            dump.graph(p.name, gm)
        if reference is not None:
            _compare(p, reference, _run(gm, verify_inputs))
    return gm


def run_pipeline(gm: fx.GraphModule, opts: Options, report: GraphReport | None = None,
                 dump: DebugDump | None = None, verify_inputs: list | None = None) -> fx.GraphModule:
    return run_passes(gm, pipeline_for(opts), report, dump, verify_inputs)


def _run(gm: fx.GraphModule, inputs: list):
    with torch.no_grad():
        out = gm(*inputs)
    return [o.detach().clone() if isinstance(o, torch.Tensor) else o for o in out]


def _compare(p: Pass, expected: list, actual: list):
    for i, (e, a) in enumerate(zip(expected, actual)):
        if isinstance(e, torch.Tensor):
            try:
                torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4, equal_nan=True)
            except AssertionError as err:
                raise VerificationError(f"pass {p.spec()} changed output {i}: {err}") from None
