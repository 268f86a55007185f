"""The constants the lossy weight passes rewrite, and how they replace one.

A weight is a floating-point constant that a matrix product, a convolution or an embedding reads
as an operand, directly or through views (a Linear weight transposed for `addmm`, a reshaped
kernel). Biases, normalization parameters and statistics, and tables such as rotary angles are
not weights.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.fx as fx

from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.ir.op_facts import VIEW_OPS

aten = torch.ops.aten

#: Ops that read weights, and which of their arguments may be one.
WEIGHT_OPERANDS = {
    aten.mm.default: (0, 1),
    aten.bmm.default: (0, 1),
    aten.addmm.default: (1, 2),
    aten.convolution.default: (1,),
    aten.embedding.default: (0,),
}


def weight_constants(gm: fx.GraphModule) -> list[fx.Node]:
    """The constants of `gm` that are weights, in graph order."""
    found: dict[fx.Node, None] = {}
    for node in gm.graph.nodes:
        if node.op != "call_function" or node.target not in WEIGHT_OPERANDS:
            continue
        for i in WEIGHT_OPERANDS[node.target]:
            root = _view_root(node.args[i]) if i < len(node.args) else None
            if root is not None and is_constant(root) and constant_value(root).is_floating_point():
                found[root] = None
    order = {n: i for i, n in enumerate(gm.graph.nodes)}
    return sorted(found, key=order.__getitem__)


def floating_constants(gm: fx.GraphModule) -> list[fx.Node]:
    """Every floating-point constant the graph reads, in graph order."""
    return [n for n in gm.graph.nodes if is_constant(n) and constant_value(n).is_floating_point()]


def rewrite_constants(gm: fx.GraphModule, nodes: list[fx.Node],
                      rewrite: Callable[[torch.Tensor], torch.Tensor | None], suffix: str) -> int:
    """Replaces each constant node n by a new constant holding rewrite(value of n), named
    `<n>_<suffix>`; rewrite returns None to leave a constant as it is. Constants are never changed
    in place (the pass manager's undo relies on it), and nodes that read one tensor get one
    rewritten tensor (rewrite is called once per tensor, in graph order). Returns how many nodes
    were replaced."""
    rewritten: dict[str, torch.Tensor | None] = {}
    replaced = 0
    for node in nodes:
        if node.target not in rewritten:
            rewritten[node.target] = rewrite(constant_value(node))
        value = rewritten[node.target]
        if value is None:
            continue
        new = add_constant(gm, value, hint=f"{node.name}_{suffix}", before=node)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        replaced += 1
    return replaced


def _view_root(arg):
    while isinstance(arg, fx.Node) and arg.op == "call_function" and arg.target in VIEW_OPS:
        arg = arg.args[0]
    return arg if isinstance(arg, fx.Node) else None
