"""dead-code: removes values nothing uses."""
from __future__ import annotations

from dataclasses import dataclass

import torch.fx as fx

from fastc.ir.op_facts import has_effects

from .base import Pass, register
from .context import PassContext


@register
@dataclass(frozen=True)
class DeadCode(Pass):
    """Removes ops and constants whose results are never used.

    Legal for every op without effects: mutating ops, asserts and random ops (whose removal would
    shift the random stream) are kept even when unused. Constants left unused are deleted from the
    module, freeing their memory.
    """
    name = "dead-code"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        removed = 0
        for node in reversed(list(gm.graph.nodes)):
            if node.users or has_effects(node):
                continue
            if node.op == "get_attr" and "." not in node.target and hasattr(gm, node.target):
                if not any(n is not node and n.op == "get_attr" and n.target == node.target
                           for n in gm.graph.nodes):
                    delattr(gm, node.target)
            gm.graph.erase_node(node)
            removed += 1
        return removed
