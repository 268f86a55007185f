"""What the passes need to know about an op: may it be removed, merged, evaluated early?

What code generation makes of an op (its class, which targets lower it) is in op_table.py."""
from __future__ import annotations

import operator

import torch
import torch.fx as fx

aten = torch.ops.aten

# Ops with effects beyond their result: asserts and runtime checks on sizes.
_EFFECTFUL = {
    aten._assert_async.default, aten._assert_async.msg, aten._assert_scalar.default,
    aten.sym_constrain_range.default, aten.sym_constrain_range_for_size.default,
    aten._print.default,
}

# Ops whose result is a view of their first argument (share its storage).
VIEW_OPS = {
    aten.view.default, aten._unsafe_view.default, aten.reshape.default, aten.permute.default,
    aten.expand.default, aten.slice.Tensor, aten.alias.default, aten.squeeze.dim,
    aten.squeeze.dims, aten.unsqueeze.default, aten.t.default, aten.transpose.int,
    aten.select.int, aten.as_strided.default, aten.diagonal.default,
}


def is_mutating(node: fx.Node) -> bool:
    schema = getattr(node.target, "_schema", None)
    return bool(schema is not None and schema.is_mutable)


def is_random(node: fx.Node) -> bool:
    """Draws random numbers: tagged so, unless it is an op whose only randomness is a dropout
    given as 0 (attention in inference)."""
    tags = getattr(node.target, "tags", ())
    if torch.Tag.nondeterministic_seeded not in tags:
        return False
    return not _no_dropout(node)


def _no_dropout(node: fx.Node) -> bool:
    if not isinstance(node.target, torch._ops.OpOverload):
        return False
    names = [a.name for a in node.target._schema.arguments]
    if "dropout_p" not in names:
        return False
    i = names.index("dropout_p")
    p = node.args[i] if i < len(node.args) else node.kwargs.get("dropout_p", 0.0)
    return isinstance(p, (int, float)) and not isinstance(p, bool) and p == 0


def has_effects(node: fx.Node) -> bool:
    """True if removing the node (when unused) could change what the program does."""
    if node.op in ("placeholder", "output"):
        return True
    if node.op != "call_function":
        return False
    if node.target in _EFFECTFUL or is_mutating(node):
        return True
    # Dropping an unused random op would shift the random stream of the ops after it.
    if is_random(node):
        return True
    return isinstance(node.target, torch._ops.HigherOrderOperator)


def is_pure(node: fx.Node) -> bool:
    """Same arguments give the same result and nothing else happens: may be merged or folded."""
    if node.op == "get_attr":
        return True
    if node.op != "call_function" or has_effects(node):
        return False
    if isinstance(node.target, torch._ops.OpOverload):
        return not any(t in node.target.tags for t in (torch.Tag.nondeterministic_bitwise,))
    return node.target in (operator.getitem,) or node.target.__module__ in ("_operator", "math")


def returned(node: fx.Node) -> bool:
    """Whether the graph returns `node` or a view of it (so its layout and aliasing are seen)."""
    todo = [node]
    while todo:
        n = todo.pop()
        for u in n.users:
            if u.op == "output":
                return True
            if u.target in VIEW_OPS:
                todo.append(u)
    return False
