"""Constants of a graph: frozen weights and folded values, held as GraphModule attributes.

A constant is a `get_attr` node whose target names a plain tensor on the owning module.
"""
from __future__ import annotations

import torch
import torch.fx as fx

from .types import type_of_value


def is_constant(node) -> bool:
    return isinstance(node, fx.Node) and node.op == "get_attr"


def constant_value(node: fx.Node) -> torch.Tensor:
    value = node.graph.owning_module
    for part in node.target.split("."):
        value = getattr(value, part)
    return value


def fresh_attr_name(gm: fx.GraphModule, hint: str) -> str:
    base = "".join(c if c.isalnum() or c == "_" else "_" for c in hint) or "c"
    if base[0].isdigit():
        base = "c" + base
    name, i = base, 0
    while hasattr(gm, name):
        i += 1
        name = f"{base}_{i}"
    return name


def add_constant(gm: fx.GraphModule, value: torch.Tensor, hint: str = "c", *, before=None) -> fx.Node:
    """Registers `value` on `gm` and returns a get_attr node for it (inserted before `before`)."""
    name = fresh_attr_name(gm, hint)
    # A buffer, not a Parameter: a frozen graph holds plain tensors, no autograd state.
    gm.register_buffer(name, value.detach(), persistent=False)
    anchor = before if before is not None else next(n for n in gm.graph.nodes if n.op != "placeholder")
    with gm.graph.inserting_before(anchor):
        node = gm.graph.get_attr(name)
    node.meta["type"] = type_of_value(value)
    return node


def copy_graph(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of `gm` whose graph (nodes, names, meta) is its own and whose constants are the same
    tensors: rewriting the copy (new constants, other nodes) leaves `gm` as it is, as long as no
    constant is changed in place (passes never do)."""
    import copy
    return fx.GraphModule(gm, copy.deepcopy(gm.graph))


def drop_unused_constants(gm: fx.GraphModule) -> int:
    """Removes constants no get_attr node reads any more (say, weights folded into others), so
    the compiled graph holds no tensor it does not use. Returns how many were dropped."""
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    unused = [name for name, _ in gm.named_buffers(recurse=False) if name not in used]
    unused += [name for name, _ in gm.named_parameters(recurse=False) if name not in used]
    for name in unused:
        delattr(gm, name)
    return len(unused)
