"""Evaluating parts of a graph that depend only on constants."""
from __future__ import annotations

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten, tree_map

from .constants import constant_value, is_constant
from .op_facts import is_pure


def constant_inputs_only(node: fx.Node) -> bool:
    """All of the node's node-arguments are constants, and it has no symbolic-size arguments."""
    leaves, _ = tree_flatten((node.args, node.kwargs))
    if any(isinstance(x, (torch.SymInt, torch.SymFloat, torch.SymBool)) for x in leaves):
        return False
    return all(is_constant(x) for x in leaves if isinstance(x, fx.Node))


def evaluate(node: fx.Node, depth: int = 8):
    """The value of `node` if it is a pure function of constants (at most `depth` ops deep), else None."""
    if is_constant(node):
        return constant_value(node)
    if depth == 0 or not is_pure(node) or node.op != "call_function":
        return None
    leaves, _ = tree_flatten((node.args, node.kwargs))
    if any(isinstance(x, (torch.SymInt, torch.SymFloat, torch.SymBool)) for x in leaves):
        return None
    values = {}
    for x in leaves:
        if isinstance(x, fx.Node):
            v = evaluate(x, depth - 1)
            if v is None:
                return None
            values[x] = v
    args, kwargs = tree_map(lambda x: values[x] if isinstance(x, fx.Node) else x, (node.args, node.kwargs))
    with torch.no_grad():
        return node.target(*args, **kwargs)
