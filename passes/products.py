"""Matrix products with a frozen weight, as the weight-rewriting lossy passes (shift-add,
sparse-2to4) find and replace them.

Matched: `aten.mm(x, Wt)`, `aten.addmm(b, x, Wt)` (beta = alpha = 1) and `aten.linear(x, W, b)`,
where the weight is a floating-point 2-D constant, possibly read through views with constant
arguments (the (in, out) operand of a Linear is `permute(W, [1, 0])`), and the bias is absent or
a 1-D floating-point constant of the output size; x is a node (an activation).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten

from fastc.ir.constants import constant_value, is_constant
from fastc.ir.op_facts import VIEW_OPS

aten = torch.ops.aten

#: Node metadata a replacing product keeps from the one it replaces (the kernel plan is not kept).
KEPT_META = ("val", "tensor_meta", "type", "nn_module_stack", "fwd_nn_module_stack",
             "source_fn_stack", "stack_trace")


@dataclass
class ProductMatch:
    x_index: int           # which argument of the product is the activation
    w_index: int           # which argument is the weight operand
    transposed: bool       # that operand is W^T (in, out) (mm, addmm), else W (linear)
    weight: torch.Tensor   # W (out, in), the constant's value read through its views
    weight_node: fx.Node   # the constant node under the views


def match_product(node: fx.Node) -> ProductMatch | None:
    """What a matched product (see the module docstring) reads, else None."""
    if node.op != "call_function":
        return None
    if node.target is aten.addmm.default and (node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1):
        return None
    operands = product_operands(node)
    if operands is None:
        return None
    x, operand, bias = operands
    transposed = node.target is not aten.linear.default
    found = constant_through_views(operand)
    if found is None:
        return None
    value, root = found
    if value.dim() != 2 or not value.is_floating_point():
        return None
    weight = value.t() if transposed else value
    if bias is not None:
        if not is_constant(bias):
            return None
        b = constant_value(bias)
        if b.dim() != 1 or b.shape[0] != weight.shape[0] or not b.is_floating_point():
            return None
    if not isinstance(x, fx.Node):
        return None
    x_index = 1 if node.target is aten.addmm.default else 0
    w_index = 2 if node.target is aten.addmm.default else 1
    return ProductMatch(x_index, w_index, transposed, weight, root)


def product_operands(node: fx.Node) -> tuple[object, object, object] | None:
    """(activation, weight operand, bias or None) of an mm, addmm or linear node, else None."""
    if node.op != "call_function":
        return None
    if node.target is aten.mm.default:
        return node.args[0], node.args[1], None
    if node.target is aten.addmm.default:
        return node.args[1], node.args[2], node.args[0]
    if node.target is aten.linear.default:
        bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        return node.args[0], node.args[1], bias
    return None


def constant_through_views(arg):
    """(value, constant node) of an operand that is a constant read through views whose other
    arguments are constants (literals), else None."""
    chain = []
    while isinstance(arg, fx.Node) and arg.op == "call_function" and arg.target in VIEW_OPS:
        chain.append(arg)
        arg = arg.args[0]
    if not is_constant(arg):
        return None
    value = constant_value(arg)
    if not isinstance(value, torch.Tensor):
        return None
    for view in reversed(chain):
        rest = tree_flatten((view.args[1:], view.kwargs))[0]
        if any(isinstance(a, (fx.Node, torch.SymInt)) for a in rest):
            return None
        value = view.target(value, *view.args[1:], **view.kwargs)
    return value, arg


def replace_product(g: fx.GraphModule, node: fx.Node, target, args: tuple, name: str) -> fx.Node:
    """Puts `target(*args)` (named `name`, with `node`'s KEPT_META) in place of the product `node`,
    erases it, then its weight operand and that operand's views, unless something else reads them."""
    weight_arg = product_operands(node)[1]
    with g.graph.inserting_before(node):
        new = g.graph.create_node("call_function", target, args, name=name)
    new.meta.update({k: node.meta[k] for k in KEPT_META if k in node.meta})
    node.replace_all_uses_with(new)
    g.graph.erase_node(node)
    while isinstance(weight_arg, fx.Node) and not weight_arg.users:
        source = weight_arg.args[0] if weight_arg.op == "call_function" else None
        g.graph.erase_node(weight_arg)
        weight_arg = source
    return new


def relative_output_error(weight: torch.Tensor, changed: torch.Tensor, hessian: torch.Tensor | None) -> float:
    """The layer's relative output error with `changed` in place of `weight` (both (out, in)):
    tr(dW H dW^T) / tr(W H W^T), H = X^T X of its inputs; ||dW||^2 / ||W||^2 without H (or when
    W H W^T is 0)."""
    w = weight.double()
    dw = w - changed.double()
    if hessian is not None:
        denominator = float(((w @ hessian) * w).sum())
        if denominator > 0:
            return float(((dw @ hessian) * dw).sum()) / denominator
    denominator = float((w * w).sum())
    return float((dw * dw).sum()) / denominator if denominator > 0 else 0.0
