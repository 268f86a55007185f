"""The pass pipeline: every stage fastc runs on a captured graph, in order, in one list."""
from __future__ import annotations

from fastc.passes import (CommonSubexpressions, DeadCode, FoldBatchNorm, FoldConstants, Pass,
                          PlanKernels, RemoveNoops, parse_pipeline)

from .options import Options


def default_pipeline(opts: Options) -> list[Pass]:
    passes = [
        RemoveNoops(),            # views, permutes and copies that change nothing
        FoldBatchNorm(),          # eval-mode BatchNorm into the conv / linear before it
        FoldConstants(),          # precompute ops over frozen weights
        CommonSubexpressions(),   # merge repeated pure ops
        DeadCode(),               # drop what nothing uses
        PlanKernels(),            # group ops into kernels (marks only; how far: ctx.choices)
    ]
    return passes


def requested_passes(opts: Options) -> frozenset[str]:
    """The passes the user named (in `passes`): the only ones a lossy pass may be."""
    return frozenset(p.name for p in parse_pipeline(opts.passes)) if opts.passes is not None else frozenset()


def pipeline_for(opts: Options) -> list[Pass]:
    passes = parse_pipeline(opts.passes) if opts.passes is not None else default_pipeline(opts)
    return [p for p in passes if p.name not in opts.disable]
