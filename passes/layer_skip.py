"""layer-skip: whole residual blocks are removed, the residual stream passing through (lossy)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx as fx

from fastc.ir.constants import constant_value, copy_graph, is_constant

from .base import register
from .context import PassContext
from .lossy import LossyPass, Proposal, Proposals
from .metrics import run_graph
from .residual_blocks import ResidualBlock, find_blocks, remove_block

log = logging.getLogger("fastc")


@register
@dataclass(frozen=True)
class LayerSkip(LossyPass):
    """Removes residual blocks (transformer layers, ResNet blocks) whose output is closest to their
    input: each removed block's output is replaced by its input stream, and its ops are erased.

    Blocks are found from the module scopes of the ops (residual_blocks.py says what is a block
    and what is not, and why): a scope indexed in a stack (`layers.3`), whose one output has the
    type of its input stream and is reached from it through at least one residual add. A
    pre-norm transformer layer (attention and MLP, two residual adds) is one block; its
    sub-blocks are not offered on their own. A graph without scopes (fastc-opt on text without
    `scope` attributes, make_fx captures) has no blocks.

    `score`: how each block's cost is estimated, on the calibration inputs:
    - "influence" (ShortGPT's Block Influence): BI = 1 - the mean cosine similarity between the
      block's input and output, per position over the feature dimension (the last dimension;
      the channel dimension of 4-D NCHW feature maps), over the calibration batches. A block
      that hardly changes the stream scores near 0. One graph run per calibration batch.
    - "loss": the measured loss of removing blocks, chosen greedily: first the block whose
      removal alone costs least, then the one that costs least with the first removed, and so on
      (blocks interact: the second-best block alone is often not the best second block). The loss
      is ctx.accuracy's (measured on the held-out inputs, as the budget will be); without it,
      the relative L2 error of the outputs on the calibration batches. About n * limit graph
      runs per batch (n blocks, `limit` proposals).
    Without calibration or example inputs there is nothing to score with: no proposals.

    One proposal per block, least costly first, at most floor(`max_fraction` * blocks) of them
    (the budget decides how many of those are kept). Cost: accuracy only; the kept graph has
    fewer ops and weights (the removed blocks' constants go) and runs faster in proportion.
    """
    name = "layer-skip"
    max_fraction: float = 0.5
    score: Literal["influence", "loss"] = "influence"

    def __post_init__(self):
        if isinstance(self.max_fraction, bool) or not isinstance(self.max_fraction, (int, float)) \
                or not 0 <= self.max_fraction <= 1:
            raise ValueError(f"pass 'layer-skip': option max_fraction={self.max_fraction!r} is not valid "
                             "(expected a number in [0, 1])")
        if self.score not in ("influence", "loss"):
            raise ValueError(f"pass 'layer-skip': option score={self.score!r} is not valid "
                             "(expected one of influence, loss)")

    def propose(self, gm: fx.GraphModule, ctx: PassContext) -> list[Proposal]:
        blocks, refused = find_blocks(gm)
        notes = [f"not a residual block: {line}" for line in refused]
        for line in notes:
            log.info("fastc: layer-skip: %s", line)
        if not blocks:
            log.info("fastc: layer-skip: no residual blocks in graph %s", getattr(gm, "meta", {}).get("name", ""))
            return Proposals([], ["no residual blocks found", *notes])
        limit = math.floor(self.max_fraction * len(blocks) + 1e-9)
        batches = ctx.inputs_for_fitting()
        if limit == 0 or not batches:
            why = ("no calibration or example inputs to score blocks on" if not batches
                   else f"max_fraction={self.max_fraction:g} of {len(blocks)} blocks is none")
            log.info("fastc: layer-skip: %s", why)
            return Proposals([], [why, *notes])
        if self.score == "influence":
            scores = block_influence(gm, blocks, batches)
            ranked = sorted(zip(scores, blocks), key=lambda sb: (sb[0], sb[1].order))[:limit]
        else:
            ranked = greedy_removal(gm, blocks, ctx, limit)
        return Proposals([self._proposal(gm, block, s) for s, block in ranked], notes)

    def _proposal(self, gm: fx.GraphModule, block: ResidualBlock, score: float) -> Proposal:
        return Proposal(f"{block.label}: {self.score} {score:.4g}", score,
                        lambda g: remove_block(g, block), _bytes_only_in(gm, block), 0)


# -- scores ------------------------------------------------------------------------------------
def block_influence(gm: fx.GraphModule, blocks: list[ResidualBlock], batches: list[list]) -> list[float]:
    """1 - mean cosine similarity of each block's input and output (see LayerSkip), in order."""
    watched = {b.input for b in blocks} | {b.output for b in blocks}
    sums = [0.0] * len(blocks)
    counts = [0] * len(blocks)
    for batch in batches:
        values = _Recorder(gm, watched).values_on(batch)
        for i, b in enumerate(blocks):
            x, y = values.get(b.input), values.get(b.output)
            if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
                continue
            dim = 1 if x.dim() == 4 else -1
            cos = torch.nn.functional.cosine_similarity(x.double(), y.double(), dim=dim, eps=1e-12)
            sums[i] += float(cos.sum())
            counts[i] += cos.numel()
    return [1.0 - s / c if c else math.inf for s, c in zip(sums, counts)]


def greedy_removal(gm: fx.GraphModule, blocks: list[ResidualBlock], ctx: PassContext,
                   limit: int) -> list[tuple[float, ResidualBlock]]:
    """Up to `limit` blocks in the order greedy removal picks them (see LayerSkip, score="loss"),
    each with the loss of removing it together with those picked before it. The budget's metric
    when there is one, else the relative L2 error of the outputs on the calibration batches.
    The losses are made non-decreasing (a proposal is never cheaper than the ones before it: the
    budget keeps prefixes)."""
    check = ctx.accuracy
    batches = ctx.inputs_for_fitting()
    if check is not None:
        check.baseline_of(gm)
    else:
        reference = [run_graph(gm, b) for b in batches]

    def loss_without(removed: list[ResidualBlock]) -> float:
        trial = copy_graph(gm)
        for block in removed:
            remove_block(trial, block)
        trial.graph.lint()
        trial.recompile()
        if check is not None:
            return check.loss(trial)[1]
        return _relative_error(reference, [run_graph(trial, b) for b in batches])

    picked: list[tuple[float, ResidualBlock]] = []
    left = list(blocks)
    floor = -math.inf
    while left and len(picked) < limit:
        chosen = [b for _, b in picked]
        loss, block = min(((loss_without(chosen + [b]), b) for b in left), key=lambda lb: (lb[0], lb[1].order))
        floor = max(floor, loss)
        picked.append((floor, block))
        left.remove(block)
    return picked


def _relative_error(reference: list[list], outputs: list[list]) -> float:
    diff = norm = 0.0
    for ref, out in zip(reference, outputs):
        for r, o in zip(ref, out):
            if isinstance(r, torch.Tensor) and r.is_floating_point():
                diff += float((o.double() - r.double()).pow(2).sum())
                norm += float(r.double().pow(2).sum())
    return math.sqrt(diff / norm) if norm > 0 else math.sqrt(diff)


class _Recorder(fx.Interpreter):
    """Runs the graph and keeps the values of the watched nodes."""

    def __init__(self, gm: fx.GraphModule, watched: set[str]):
        super().__init__(gm)
        self.watched, self.values = watched, {}

    def values_on(self, batch: list) -> dict:
        self.values = {}
        with torch.no_grad():
            self.run(*batch)
        return self.values

    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        if n.name in self.watched:
            self.values[n.name] = value.detach() if isinstance(value, torch.Tensor) else value
        return value


def _bytes_only_in(gm: fx.GraphModule, block: ResidualBlock) -> int:
    """Bytes of the constants that only the block's ops read (they go with it)."""
    ops = set(block.nodes)
    seen, total = set(), 0
    for n in gm.graph.nodes:
        if is_constant(n) and n.target not in seen and n.users and all(u.name in ops for u in n.users):
            seen.add(n.target)
            t = constant_value(n)
            total += t.numel() * t.element_size()
    return total
