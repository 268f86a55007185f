"""fuse-product-epilogues: convolutions and matrix products with a frozen weight, with the
residual add and the activation after them, as one fastc.conv2d_act / fastc.linear_act op."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.kernels.onednn import onednn_refusal

from .base import Pass, register
from .context import PassContext
from .products import KEPT_META, match_product, product_operands

aten = torch.ops.aten
CONV2D_ACT = torch.ops.fastc.conv2d_act.default
LINEAR_ACT = torch.ops.fastc.linear_act.default

# Views a linear layer's output goes through before its activation (aot graphs run a 3-D linear
# as view -> addmm -> view): the activation moves before the view.
RESHAPES = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)


@register
@dataclass(frozen=True)
class FuseProductEpilogues(Pass):
    """Rewrites a 2-D convolution, or a matrix product (mm, addmm, linear), whose weight (and
    bias) are float32 constants, together with what follows it:

        relu(convolution(x, W, b) + r)  ->  fastc.conv2d_act(x, W, b, ..., r, "relu", [], false)
        gelu(view(addmm(b, x, W^T)))    ->  view(fastc.linear_act(x, W, b, none, "gelu", []))

    The residual `+ r` (convolutions only: a same-shape tensor, alpha 1) and the activation
    (`kernels.onednn.ACTIVATIONS`: relu, hardtanh, gelu, silu, sigmoid, tanh, hardswish) are
    taken when the value before them has no other reader. Legal where oneDNN can run the op
    (float32 on the CPU, a torch build with oneDNN); exact up to float rounding. How the op runs
    (oneDNN on a weight packed once, or the ATen ops one by one) is the choices object's pick,
    per problem, at code generation. A convolution whose every reader is another conv2d_act may
    return its result channels-last (`any_layout`): that chain then never converts layouts.
    The pipeline runs it for the cpu target only.
    """
    name = "fuse-product-epilogues"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        rewritten = 0
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or not _float32_cpu(node):
                continue
            if node.target is aten.convolution.default:
                rewritten += _fuse_conv(gm, node)
            elif product_operands(node) is not None:
                rewritten += _fuse_linear(gm, node)
        if rewritten:
            _free_layouts(gm)
            gm.graph.lint()
            gm.recompile()
        return rewritten


def _float32_cpu(node: fx.Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and onednn_refusal(val.dtype, val.device) is None


def _only_user(node: fx.Node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _activation(node: fx.Node, value: fx.Node):
    """(act, act_args) when `node` applies a supported activation to `value`, else None."""
    if node is None or node.op != "call_function" or not node.args or node.args[0] is not value:
        return None
    t, rest, kw = node.target, node.args[1:], node.kwargs
    if t is aten.relu.default:
        return "relu", []
    if t is aten.hardtanh.default:
        lo, hi = (list(rest) + [-1.0, 1.0][len(rest):])[:2]
        return ("hardtanh", [float(lo), float(hi)]) if isinstance(lo, (int, float)) and isinstance(hi, (int, float)) \
            else None
    if t is aten.gelu.default:
        approximate = rest[0] if rest else kw.get("approximate", "none")
        return ("gelu-tanh" if approximate == "tanh" else "gelu"), []
    simple = {aten.silu.default: "silu", aten.sigmoid.default: "sigmoid", aten.tanh.default: "tanh",
              aten.hardswish.default: "hardswish"}
    return (simple[t], []) if t in simple and not rest and not kw else None


def _residual(node: fx.Node, value: fx.Node):
    """The other operand when `node` is `value + other` (same shape and dtype, alpha 1)."""
    if node is None or node.op != "call_function" or node.target is not aten.add.Tensor or node.kwargs:
        return None
    a, b = node.args[:2]
    other = b if a is value else a if b is value else None
    if not isinstance(other, fx.Node) or other is value:
        return None
    mine, theirs = value.meta.get("val"), other.meta.get("val")
    if not isinstance(theirs, torch.Tensor) or theirs.shape != mine.shape or theirs.dtype != mine.dtype:
        return None
    return other


def _replace(gm: fx.GraphModule, last: fx.Node, args: tuple, target, name: str) -> fx.Node:
    """`target(*args)` in place of `last` (the last op absorbed), keeping its metadata."""
    with gm.graph.inserting_before(last):
        new = gm.graph.create_node("call_function", target, args, name=name)
    new.meta.update({k: last.meta[k] for k in KEPT_META if k in last.meta})
    last.replace_all_uses_with(new)
    return new


def _erase(gm: fx.GraphModule, nodes) -> None:
    for n in reversed(nodes):
        if not n.users:
            gm.graph.erase_node(n)


def _fuse_conv(gm: fx.GraphModule, conv: fx.Node) -> int:
    x, w, b, stride, padding, dilation, transposed, _, groups = conv.args
    if transposed or not is_constant(w) or (b is not None and not is_constant(b)) or len(stride) != 2:
        return 0
    if not isinstance(x, fx.Node) or any(not isinstance(v, int) for v in (*stride, *padding, *dilation, groups)):
        return 0
    absorbed, value, residual, act = [conv], conv, None, ("none", [])
    add = _only_user(value)
    other = _residual(add, value)
    if other is not None:
        residual, value = other, add
        absorbed.append(add)
    found = _activation(_only_user(value), value)
    if found is not None:
        act, value = found, _only_user(value)
        absorbed.append(value)
    new = _replace(gm, value, (x, w, b, list(stride), list(padding), list(dilation), groups, residual,
                               act[0], act[1], False), CONV2D_ACT, f"{conv.name}_act")
    _erase(gm, absorbed)
    return 1


def _fuse_linear(gm: fx.GraphModule, product: fx.Node) -> int:
    m = match_product(product)
    if m is None:
        return 0
    x, operand, bias = product_operands(product)
    absorbed, value, reshape = [product], product, None
    user = _only_user(value)
    if user is not None and user.target in RESHAPES and user.args[0] is value:
        reshape = user
        user = _only_user(user)
    found = _activation(user, reshape if reshape is not None else value)
    act = found or ("none", [])
    weight = _weight_node(gm, operand, m, product)
    args = (x, weight, bias, None, act[0], act[1])
    if found is None:
        _replace(gm, product, args, LINEAR_ACT, f"{product.name}_act")
        _erase(gm, [product, *_weight_chain(operand)])
        return 1
    # act(reshape(product)) == reshape(act(product)): the new op takes the product's place and
    # the reshape moves after it.
    fused = _replace(gm, product, args, LINEAR_ACT, f"{product.name}_act")
    gm.graph.erase_node(product)
    if reshape is not None:
        with gm.graph.inserting_before(user):
            moved = gm.graph.create_node("call_function", reshape.target, (fused, *reshape.args[1:]),
                                         dict(reshape.kwargs), name=f"{reshape.name}_act")
        moved.meta.update({k: user.meta[k] for k in KEPT_META if k in user.meta})
        user.replace_all_uses_with(moved)
        _erase(gm, [reshape, user])
    else:
        user.replace_all_uses_with(fused)
        gm.graph.erase_node(user)
    _erase(gm, _weight_chain(operand))
    return 1


def _weight_node(gm: fx.GraphModule, operand, m, product: fx.Node) -> fx.Node:
    """A node holding the (out, in) weight: the constant itself when the operand is the constant
    read as is (linear) or transposed once (mm / addmm), else a new constant."""
    root = m.weight_node
    if constant_value(root) is m.weight or (
            constant_value(root).shape == m.weight.shape and constant_value(root).stride() == m.weight.stride()
            and constant_value(root).data_ptr() == m.weight.data_ptr()):
        return root
    return add_constant(gm, m.weight, hint=f"{product.name}_weight", before=product)


def _weight_chain(operand) -> list:
    """The views from the weight constant up to the product's operand (erased when unused)."""
    chain = []
    while isinstance(operand, fx.Node) and operand.op == "call_function":
        chain.insert(0, operand)
        operand = operand.args[0]
    return [operand, *chain] if isinstance(operand, fx.Node) else chain


def _free_layouts(gm: fx.GraphModule) -> None:
    """any_layout on each conv2d_act read only by other conv2d_act ops (as input or residual)."""
    for n in gm.graph.nodes:
        if n.target is CONV2D_ACT and n.users and all(u.target is CONV2D_ACT for u in n.users):
            n.update_arg(10, True)
