"""cse: merges ops that compute the same value twice."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.op_facts import is_pure

from .base import Pass, register
from .context import PassContext


def _key(value):
    """A hashable key that tells 1, 1.0 and True apart (they hash equal in Python)."""
    if isinstance(value, fx.Node):
        return ("node", value)
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_key(v) for v in value))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
        return ("sym", str(value.node.expr))
    if isinstance(value, float) and value != value:
        return ("nan",)
    return (type(value).__name__, value)


@register
@dataclass(frozen=True)
class CommonSubexpressions(Pass):
    """Replaces an op by an earlier one with the same target and the same arguments.

    Legal for pure ops only (no mutation, no effects, not random): two calls then give equal
    results. Constants are merged when they name the same attribute.
    """
    name = "cse"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        seen: dict[tuple, fx.Node] = {}
        merged = 0
        for node in list(gm.graph.nodes):
            if not is_pure(node):
                continue
            key = (node.op, node.target, _key(node.args), _key(dict(node.kwargs)))
            try:
                earlier = seen.setdefault(key, node)
            except TypeError:  # an unhashable argument: leave the node alone
                continue
            if earlier is not node:
                node.replace_all_uses_with(earlier)
                gm.graph.erase_node(node)
                merged += 1
        return merged
