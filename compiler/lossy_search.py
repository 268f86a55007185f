"""Holds a lossy pass to the accuracy budget: keeps the largest set of its proposals that fits.

    proposals = pass.propose(graph)            # least sensitive first
    keep the longest prefix whose measured loss <= budget   (binary search over prefixes)
    left out? proposals = pass.retry(left out) # e.g. the same layers at more bits; search again
    apply what was kept to the graph

Each try applies a prefix to a copy of the graph (constants shared, never changed in place) and
measures the metric on the held-out calibration batches. The search assumes a longer prefix
costs at least as much as a shorter one (the proposals are sorted so); the prefix it keeps was
measured within the budget whether or not that holds. A budget of 0 keeps nothing.

The budget holds for the lossy passes together: every loss is measured against the graph before
the first of them. The record says what was rewritten and what was left out, the metric before
and after (of the graph before and after this pass), the loss after it (against the original), the
weight bytes before and after and the graph's speed before and after (median of timed runs of
the graph's ATen ops on a held-out batch).
"""
from __future__ import annotations

import logging
import statistics
import time
from dataclasses import dataclass, field

import torch.fx as fx

from fastc.passes import LossyPass, Pass, PassContext, Proposal
from fastc.passes.metrics import run_graph

from .ir.constants import constant_value, copy_graph, is_constant

log = logging.getLogger("fastc")

#: Searches per pass (the first, then retries): a pass that keeps offering is cut off here.
MAX_ROUNDS = 8


@dataclass
class LossyRecord:
    name: str                                        # the pass as specified
    metric: str | None = None
    budget: float | None = None
    metric_before: float | None = None
    metric_after: float | None = None
    loss: float | None = None
    rewritten: list[str] = field(default_factory=list)  # what each kept proposal did
    not_proposed: list[str] = field(default_factory=list)  # the pass's notes: what it cannot rewrite, why
    left_out: list[str] = field(default_factory=list)   # what the budget refused
    rewrites: int = 0                                   # rewrites the kept proposals made
    tries: int = 0                                      # graphs measured in the search
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0
    ms_before: float | None = None
    ms_after: float | None = None
    note: str | None = None

    def text(self) -> str:
        head = f"lossy {self.name}: {len(self.rewritten)} rewrites kept, {len(self.left_out)} left out"
        if self.metric is not None and self.metric_after is not None:
            head += (f"; {self.metric} {self.metric_before:.4g} -> {self.metric_after:.4g} "
                     f"(loss {self.loss:.4g}, budget {'none' if self.budget is None else f'{self.budget:g}'})")
        lines = [head, f"  weights {self.weight_bytes_before:,} -> {self.weight_bytes_after:,} B"
                 + (f"; graph {self.ms_before:.3f} -> {self.ms_after:.3f} ms per call (ATen ops)"
                    if self.ms_before is not None and self.ms_after is not None else "")]
        lines += [f"  kept: {w}" for w in self.rewritten]
        lines += [f"  left out: {w}" for w in self.left_out]
        lines += [f"  not proposed: {w}" for w in self.not_proposed]
        if self.note:
            lines.append(f"  note: {self.note}")
        return "\n".join(lines)


def proposals_of(p: Pass, gm: fx.GraphModule, ctx: PassContext) -> list[Proposal]:
    if isinstance(p, LossyPass):
        return p.propose(gm, ctx)
    return [Proposal(p.spec(), 0.0, lambda g: p.run(g, ctx))]  # a plain lossy Pass: all or nothing


def run_lossy(gm: fx.GraphModule, p: Pass, ctx: PassContext) -> LossyRecord:
    """Runs lossy pass `p` on `gm` in place, within ctx.accuracy; returns what it did."""
    record = LossyRecord(p.spec())
    check = ctx.accuracy
    batch = (ctx.held_out_inputs or [None])[0]
    record.weight_bytes_before = constant_bytes(gm)
    record.ms_before = _time(gm, batch)
    if check is not None:
        record.metric, record.budget = check.metric.name, check.budget
        first = check.baseline is None
        baseline = check.baseline_of(gm)  # the graph before the first lossy pass
        record.metric_before = baseline if first else check.metric.value(gm)
    pending = proposals_of(p, gm, ctx)
    record.not_proposed = list(getattr(pending, "notes", ()))
    if not pending:
        record.note = "nothing to rewrite" + (f": {record.not_proposed[0]}" if record.not_proposed else "")
    kept: list[Proposal] = []
    measured: dict[int, float] = {}  # loss of kept + prefix, by prefix length, this round

    def loss_of(prefix: list[Proposal]) -> float:
        trial = copy_graph(gm)
        for q in kept + prefix:
            q.apply(trial)
        trial.graph.lint()
        trial.recompile()
        record.tries += 1
        return check.loss(trial)[1]

    rounds = 0
    while pending:
        rounds += 1
        if check is None or check.budget is None:
            kept += pending
            break
        if check.budget == 0:
            record.left_out += [q.what for q in pending]
            record.note = "accuracy_budget is 0: the graph stays exact"
            break
        measured.clear()
        n = _longest_within(pending, loss_of, check.within, measured)
        kept += pending[:n]
        left = pending[n:]
        if not left:
            break
        retry = p.retry(_applied(gm, kept), ctx, left) if isinstance(p, LossyPass) and rounds < MAX_ROUNDS else []
        if not retry:
            record.left_out += [q.what for q in left]
            break
        pending = retry
    rewrites = 0
    for q in kept:
        done = q.apply(gm)
        rewrites += done if isinstance(done, int) else 1
    gm.graph.lint()
    gm.recompile()
    record.rewritten = [q.what for q in kept]
    record.weight_bytes_after = constant_bytes(gm)
    record.ms_after = _time(gm, batch)
    if check is not None:
        record.metric_after, record.loss = check.loss(gm)
    if not kept and record.left_out and record.note is None:
        record.note = (f"left out: even its least sensitive rewrite ({record.left_out[0]}) costs more "
                       f"{record.metric} than the budget {check.budget:g}")
    record.rewrites = rewrites
    return record


def _longest_within(pending: list[Proposal], loss_of, within, measured: dict[int, float]) -> int:
    """The longest prefix of `pending` measured within the budget (0 when none is)."""
    n = len(pending)
    measured[n] = loss_of(pending)
    if within(measured[n]):
        return n
    lo, hi = 0, n  # lo: fits (the empty prefix changes nothing), hi: does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        measured[mid] = loss_of(pending[:mid])
        if within(measured[mid]):
            lo = mid
        else:
            hi = mid
    return lo


def _applied(gm: fx.GraphModule, kept: list[Proposal]) -> fx.GraphModule:
    g = copy_graph(gm)
    for q in kept:
        q.apply(g)
    g.recompile()
    return g


def constant_bytes(gm: fx.GraphModule) -> int:
    seen, total = set(), 0
    for n in gm.graph.nodes:
        if is_constant(n) and n.target not in seen:
            seen.add(n.target)
            t = constant_value(n)
            total += t.numel() * t.element_size()
    return total


def _time(gm: fx.GraphModule, batch, repeats: int = 5) -> float | None:
    if batch is None:
        return None
    run_graph(gm, batch)  # warm up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_graph(gm, batch)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)

