"""merge-sibling-products: matrix products of one activation with several frozen weights (an
attention layer's query, key and value projections) as one product with the weights side by
side, each former result a slice of its columns."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.ir.op_facts import VIEW_OPS, returned
from fastc.ir.types import TensorType, node_type, type_of_value

from .base import Pass, register
from .context import PassContext
from .products import constant_through_views

aten = torch.ops.aten


@register
@dataclass(frozen=True)
class MergeSiblingProducts(Pass):
    """Rewrites products that read the same 2-D activation x with constant weights,

        addmm(b1, x, W1), addmm(b2, x, W2), ...   ->  y = addmm([b1 b2 ...], x, [W1 W2 ...])
                                                      slice(y, 1, 0, n1), slice(y, 1, n1, n1 + n2), ...

    (or all `mm(x, Wi)` without biases): one product call instead of several, x read once. Each
    result becomes a column slice of the merged one, so its rows are strided by the merged width:
    legal where every reader takes that layout. Readers are any ops (ATen's take strided
    tensors) and views, which are checked on a tensor of the new layout (a view that needs the
    result contiguous, as flattening it would, keeps the group apart). Not taken: products the
    graph returns (their layout would be seen), symbolic sizes, differing dtypes, addmm with
    beta or alpha other than 1. Exact: each output element is the same dot product.
    """
    name = "merge-sibling-products"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        merged = 0
        for x in list(gm.graph.nodes):
            group = _siblings(x)
            if len(group) >= 2 and _slices_readable(group):
                _merge(gm, x, group)
                merged += 1
        if merged:
            gm.graph.lint()
            gm.recompile()
        return merged


def _siblings(x: fx.Node) -> list[fx.Node]:
    """The products reading `x` as their activation with a constant weight, of the kind (addmm
    or mm) most of them have, in graph order."""
    found = {aten.addmm.default: [], aten.mm.default: []}
    for u in x.users:
        if _weight(u, x) is not None:
            found[u.target].append(u)
    group = max(found.values(), key=len)
    dtypes = {node_type(n).dtype for n in group if isinstance(node_type(n), TensorType)}
    return group if len(dtypes) == 1 else []


def _weight(node: fx.Node, x: fx.Node) -> torch.Tensor | None:
    """The (in, out) weight of a product of `x` with a constant, 2-D, static-sized result that
    the graph does not return; else None."""
    if node.op != "call_function" or node.kwargs or node.target not in (aten.addmm.default, aten.mm.default):
        return None
    x_arg, w_arg = (node.args[1], node.args[2]) if node.target is aten.addmm.default else node.args[:2]
    if x_arg is not x or w_arg is x:
        return None
    found = constant_through_views(w_arg)
    if found is None or found[0].dim() != 2 or not found[0].is_floating_point():
        return None
    if node.target is aten.addmm.default:
        b = node.args[0]
        if not is_constant(b) or constant_value(b).shape != (found[0].shape[1],):
            return None
    t = node_type(node)
    if not (isinstance(t, TensorType) and len(t.shape) == 2 and all(isinstance(d, int) for d in t.shape)):
        return None
    if returned(node):
        return None
    return found[0]


def _slices_readable(group: list[fx.Node]) -> bool:
    """Whether every view reading a product (through views) works on its column slice."""
    width = sum(node_type(n).shape[1] for n in group)
    for n in group:
        rows, cols = node_type(n).shape
        value = torch.empty_strided((rows, cols), (width, 1), device="meta")
        if not _views_work(n, value):
            return False
    return True


def _views_work(node: fx.Node, value: torch.Tensor) -> bool:
    for u in node.users:
        if u.target not in VIEW_OPS:
            continue
        if u.args[0] is not node or any(isinstance(a, fx.Node) for a in u.args[1:]):
            return False
        try:
            out = u.target(value, *u.args[1:], **u.kwargs)
        except Exception:  # noqa: BLE001 - a view this layout cannot give (RuntimeError or ValueError)
            return False
        if u.target is aten.reshape.default and out.data_ptr() != value.data_ptr():
            return False  # a reshape that would copy: not a view any more
        if not _views_work(u, out):
            return False
    return True


def _merge(gm: fx.GraphModule, x: fx.Node, group: list[fx.Node]) -> None:
    first = group[0]
    weights = [_weight(n, x) for n in group]
    old_operands = set()
    for n in group:
        todo = [a for a in n.args if isinstance(a, fx.Node) and a is not x]
        while todo:
            a = todo.pop()
            old_operands.add(a)
            todo += [b for b in a.all_input_nodes if a.op == "call_function"]
    widths = [w.shape[1] for w in weights]
    w_node = add_constant(gm, torch.cat(weights, 1).contiguous(), hint=f"{first.name}_merged_weight", before=first)
    with gm.graph.inserting_before(first):
        if first.target is aten.addmm.default:
            bias = torch.cat([constant_value(n.args[0]) for n in group])
            b_node = add_constant(gm, bias, hint=f"{first.name}_merged_bias", before=first)
            merged = gm.graph.call_function(aten.addmm.default, (b_node, x, w_node))
        else:
            merged = gm.graph.call_function(aten.mm.default, (x, w_node))
    merged.name = f"{first.name}_merged"
    _set_value(merged, first.target, merged.args)
    start, last = 0, merged
    for n, width in zip(group, widths):
        with gm.graph.inserting_after(last):
            part = gm.graph.call_function(aten.slice.Tensor, (merged, 1, start, start + width))
        part.name = f"{n.name}_cols"
        part.meta.update({k: n.meta[k] for k in ("nn_module_stack", "stack_trace", "source_fn_stack") if k in n.meta})
        _set_value(part, aten.slice.Tensor, part.args)
        n.replace_all_uses_with(part)
        gm.graph.erase_node(n)
        _revalue_views(part)
        start, last = start + width, part
    for node in reversed(list(gm.graph.nodes)):  # the separate weights, biases and their views, unread
        if not node.users and (node.op == "get_attr" or node.op == "call_function" and node.target in VIEW_OPS
                               and _constant_root(node)) and node in old_operands:
            gm.graph.erase_node(node)


def _constant_root(node: fx.Node) -> bool:
    while isinstance(node, fx.Node) and node.op == "call_function" and node.target in VIEW_OPS:
        node = node.args[0]
    return isinstance(node, fx.Node) and is_constant(node)


def _set_value(node: fx.Node, target, args) -> None:
    """The node's example value (under the graph's fake mode, when its inputs have values) and
    its type (computed on the meta device when they have only types)."""
    from dataclasses import replace

    from torch._guards import detect_fake_mode
    inputs = [a for a in args if isinstance(a, fx.Node)]
    mode = detect_fake_mode([a.meta["val"] for a in inputs if isinstance(a.meta.get("val"), torch.Tensor)])
    if mode is not None:
        def value(a):
            if not isinstance(a, fx.Node):
                return a
            if is_constant(a):
                return mode.from_tensor(constant_value(a), static_shapes=True)
            return a.meta["val"]
        with mode:
            node.meta["val"] = target(*[value(a) for a in args])
        node.meta["type"] = type_of_value(node.meta["val"])
        return

    def meta(a):
        if not isinstance(a, fx.Node):
            return a
        if is_constant(a):
            c = constant_value(a)
            return torch.empty_strided(c.shape, c.stride(), dtype=c.dtype, device="meta")
        t = node_type(a)
        return torch.empty(t.shape, dtype=t.dtype, device="meta")
    device = next(node_type(a).device for a in inputs if not is_constant(a))
    node.meta["type"] = replace(type_of_value(target(*[meta(a) for a in args])), device=device)


def _revalue_views(node: fx.Node) -> None:
    """Example values of the views reading `node`, again from its new value (its strides)."""
    val = node.meta.get("val")
    for u in list(node.users):
        if u.target not in VIEW_OPS or "val" not in u.meta or val is None:
            continue
        mode = getattr(val, "fake_mode", None)
        if mode is None:
            continue
        with mode:
            u.meta["val"] = u.target(val, *u.args[1:], **u.kwargs)
        _revalue_views(u)
