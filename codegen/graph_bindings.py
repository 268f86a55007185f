"""Where a graph's size symbols come from at run time: which input carries each one."""
from __future__ import annotations

import sympy
import torch

from fastc.ir import ScalarType, TensorType, node_type


def graph_bindings(gm) -> dict[str, tuple]:
    """Size symbols that are sizes of the graph's inputs: name -> (placeholder index, dim or None)."""
    found = {}
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i, node in enumerate(placeholders):
        t = node_type(node)
        if isinstance(t, TensorType):
            for d, size in enumerate(t.shape):
                if isinstance(size, sympy.Symbol):
                    found.setdefault(size.name, (i, d))
        elif isinstance(t, ScalarType) and t.kind == "int":
            val = node.meta.get("val")
            expr = val.node.expr if isinstance(val, torch.SymInt) else sympy.Symbol(node.name)
            if isinstance(expr, sympy.Symbol):
                found.setdefault(expr.name, (i, None))
    return found
