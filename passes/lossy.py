"""What a lossy pass offers the accuracy budget: proposals, least sensitive first.

A lossy pass does not decide how much to rewrite. It proposes rewrites, each with its own
sensitivity score (lower: cheaper in accuracy, by the pass's own estimate), and the pass manager
keeps the longest prefix of them whose measured loss stays within the user's budget
(compiler/lossy_search.py). What the budget left out the pass may propose again at a gentler
setting (`retry`: shift-add offers the left-out layers at more bits), and the search goes on.

A proposal is applied to a copy of the graph it was proposed on (the search tries several
prefixes), so `apply` finds its nodes by name and never changes a constant in place; values it
needs (a quantized weight) are computed once, when proposed, and shared by every try.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch.fx as fx

from .base import Pass
from .context import PassContext


@dataclass
class Proposal:
    #: What this rewrite does, for the report: "layers.0.fc1 (mm_3): 3 bits".
    what: str
    #: The pass's own estimate of its cost; proposals come sorted by it, lowest first.
    sensitivity: float
    #: Rewrites a graph holding the nodes this was proposed on (found by name).
    apply: Callable[[fx.GraphModule], None]
    #: Bytes of the constants this rewrite replaces, and of those it adds.
    weight_bytes_before: int = 0
    weight_bytes_after: int = 0


class Proposals(list):
    """What `propose` may return instead of a plain list: the proposals, and notes on what the
    pass did not propose and why (a layer it cannot rewrite); the report shows the notes."""

    def __init__(self, proposals=(), notes=()):
        super().__init__(proposals)
        self.notes: list[str] = list(notes)


class LossyPass(Pass):
    """A pass that changes what the graph computes; it runs only when the user names it."""
    exact: ClassVar[bool] = False

    def propose(self, gm: fx.GraphModule, ctx: PassContext) -> list[Proposal]:
        """The rewrites this pass would make, least sensitive first. By default one proposal:
        the whole pass."""
        return [Proposal(self.spec(), 0.0, lambda g: self.run(g, ctx))]

    def retry(self, gm: fx.GraphModule, ctx: PassContext, left_out: list[Proposal]) -> list[Proposal]:
        """Proposals standing in for `left_out` (which the budget refused) at a gentler setting,
        least sensitive first; [] when there is none. `gm` holds the kept rewrites."""
        return []

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        """Applies every proposal (no budget): the fastc-opt path."""
        proposals = self.propose(gm, ctx)
        for p in proposals:
            p.apply(gm)
        return len(proposals)
