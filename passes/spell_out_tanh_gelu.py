"""spell-out-tanh-gelu: the tanh approximation of GELU as its formula in ATen ops."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.types import node_type

from .base import Pass, register
from .context import PassContext

aten = torch.ops.aten

SQRT_2_OVER_PI = 0.7978845608028654


@register
@dataclass(frozen=True)
class SpellOutTanhGelu(Pass):
    """Replaces `gelu(x, approximate="tanh")` by the ATen ops of its formula,
    `x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3)))`; the exact GELU stays.

    Run by the cpu target on each kernel's graph before torch-mlir imports it: torch-mlir
    (20261001) lowers the tanh GELU with sqrt(2/pi) rounded to 0.797724 (it is 0.7978846), up to
    5e-5 off eager. Legal for every x: the formula eager computes, in x's dtype; the ops round
    one by one, so results may differ from eager's fused kernel by rounding only.
    """
    name = "spell-out-tanh-gelu"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        rewritten = 0
        for node in list(gm.graph.nodes):
            if node.target is not aten.gelu.default or node.kwargs.get("approximate", "none") != "tanh":
                continue
            x = node.args[0]
            steps = [(aten.mul.Tensor, lambda v: (x, x)), (aten.mul.Tensor, lambda v: (v[-1], x)),
                     (aten.mul.Tensor, lambda v: (v[-1], 0.044715)), (aten.add.Tensor, lambda v: (x, v[-1])),
                     (aten.mul.Tensor, lambda v: (v[-1], SQRT_2_OVER_PI)), (aten.tanh.default, lambda v: (v[-1],)),
                     (aten.add.Tensor, lambda v: (v[-1], 1.0)), (aten.mul.Tensor, lambda v: (x, 0.5)),
                     (aten.mul.Tensor, lambda v: (v[-2], v[-1]))]
            made: list[fx.Node] = []
            with gm.graph.inserting_before(node):
                for op, args in steps:
                    new = gm.graph.call_function(op, args(made))
                    new.meta["type"] = node_type(node)   # every step has the type of x and of the result
                    if "val" in x.meta:                  # a captured graph: example values too
                        new.meta["val"] = op(*fx.node.map_arg(new.args, lambda n: n.meta["val"]))
                    made.append(new)
            node.replace_all_uses_with(made[-1])
            gm.graph.erase_node(node)
            rewritten += 1
        return rewritten
