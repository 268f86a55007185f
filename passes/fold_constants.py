"""fold-constants: evaluates ops over constants (frozen weights) once, at compile time."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.ir.evaluate import constant_inputs_only, evaluate
from fastc.ir.op_facts import is_pure

from .base import Pass, register
from .context import PassContext


@register
@dataclass(frozen=True)
class FoldConstants(Pass):
    """Replaces an op whose inputs are all constants by a constant holding its result.

    Legal for pure, deterministic ops. With frozen weights (inference), this precomputes weight
    transposes, casts and reshapes. A folded view (a transpose, a reshape) stays a view of the
    weight it reads, so no weight is held twice. A result larger than its inputs (an expand, a
    `full`) is only folded when it has at most `max_new_elements` elements, so folding never
    inflates memory.
    """
    name = "fold-constants"
    max_new_elements: int = 4096

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        folded = 0
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or not is_pure(node) or not constant_inputs_only(node):
                continue
            inputs = [constant_value(a) for a in node.all_input_nodes if is_constant(a)]
            try:
                value = evaluate(node, depth=1)  # its inputs are constants: one op to run
            except Exception:  # an op that cannot run on these values is left to run later
                continue
            if not isinstance(value, torch.Tensor):
                continue
            if value.numel() > max(self.max_new_elements, sum(t.numel() for t in inputs)):
                continue
            # No copy: a view keeps sharing its input's storage (no pass changes a constant in place).
            const = add_constant(gm, value, hint=f"folded_{node.name}", before=node)
            node.replace_all_uses_with(const)
            gm.graph.erase_node(node)
            folded += 1
        return folded

