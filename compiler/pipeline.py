"""The pass pipeline: every stage fastc runs on a captured graph, in order, in one list."""
from __future__ import annotations

from fastc.passes import (CommonSubexpressions, DeadCode, FoldBatchNorm, FoldConstants, FuseAttention,
                          FuseBlocks, FuseProductEpilogues, GroupedKvAttention, IndexAsView, MergeSiblingProducts,
                          Pass, PlanKernels, RemoveNoops, parse_pipeline)

from .options import Options


def default_pipeline(opts: Options) -> list[Pass]:
    passes = [
        RemoveNoops(),            # views, permutes and copies that change nothing
        *lossy_passes(opts),      # opt-in, within the accuracy budget: shift-add, ... (before
                                  # folding: recalibrate-batchnorm needs the batch norms)
        FoldBatchNorm(),          # eval-mode BatchNorm into the conv / linear before it
        FoldConstants(),          # precompute ops over frozen weights
        CommonSubexpressions(),   # merge repeated pure ops
        IndexAsView(),            # indexing by constant aranges (attention masks) as a view
        FuseAttention(),          # softmax(q @ k.T * s + mask) @ v as one SDPA
        GroupedKvAttention(),     # SDPA reads grouped k / v heads as they are, not repeated
        DeadCode(),               # drop what nothing uses
        FuseBlocks(),             # residual blocks (conv, MLP) as one block op each
        *cpu_passes(opts),        # cpu target: sibling products as one (q, k, v), products with
                                  # their epilogues (oneDNN or ATen)
        PlanKernels(),            # group ops into kernels (marks only; how far: ctx.choices)
    ]
    return passes


def cpu_passes(opts: Options) -> list[Pass]:
    """Rewrites into ops only the cpu target runs well (their implementation is chosen there)."""
    return [MergeSiblingProducts(), FuseProductEpilogues()] if opts.target == "cpu" else []


def lossy_passes(opts: Options) -> list[Pass]:
    """The lossy passes the user named (option `lossy`), in their order."""
    return parse_pipeline(opts.lossy) if opts.lossy else []


def requested_passes(opts: Options) -> frozenset[str]:
    """The passes the user named in `lossy`: the only ones a lossy pass may be."""
    return frozenset(p.name for p in lossy_passes(opts))


def pipeline_for(opts: Options) -> list[Pass]:
    if opts.passes is None:
        passes = default_pipeline(opts)
    else:  # the user's exact passes, the lossy ones first (after a leading remove-noops)
        passes = parse_pipeline(opts.passes)
        at = 1 if passes and isinstance(passes[0], RemoveNoops) else 0
        passes[at:at] = lossy_passes(opts)
    return [p for p in passes if p.name not in opts.disable]
