"""fuse-product-epilogues: convolutions and matrix products with a frozen weight, with the
residual add and the activation after them, as one fastc.conv2d_act / fastc.linear_act op."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures
from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.ir.types import TensorType, node_type
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
        gelu(view(addmm(b, view(x), W^T)))  ->  fastc.linear_act(x, W, b, none, "gelu", [])

    A linear layer's input and output views that only fold leading dimensions go (the op takes
    N-D input). The residual `+ r` (convolutions only: a same-shape tensor, alpha 1) and the activation
    (`kernels.onednn.ACTIVATIONS`: relu, hardtanh, gelu, silu, sigmoid, tanh, hardswish) are
    taken when the value before them has no other reader. Legal where oneDNN can run the op
    (float32 on the CPU, a torch build with oneDNN); exact up to float rounding. How the op runs
    (oneDNN on a weight packed once, or the ATen ops one by one) is the choices object's pick,
    per problem, at code generation. A convolution whose every reader is another conv2d_act may
    return its result channels-last (`any_layout`), also when a max / average pooling between them
    passes the layout on: that chain then never converts layouts.
    Which legal products it takes is the choices object's preference (`library_product`: the
    rules take convolutions and products of at least 4M multiply-adds); without one, every legal
    product. The pipeline runs it for the cpu target only.
    """
    name = "fuse-product-epilogues"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        rewritten = 0
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or not _float32_cpu(node):
                continue
            if node.target is aten.convolution.default:
                rewritten += _fuse_conv(gm, node, ctx.choices)
            elif product_operands(node) is not None:
                rewritten += _fuse_linear(gm, node, ctx.choices)
        if rewritten:
            _free_layouts(gm)
            _linear_on_nd_inputs(gm)
            gm.graph.lint()
            gm.recompile()
        return rewritten


def _float32_cpu(node: fx.Node) -> bool:
    t = node_type(node)
    return isinstance(t, TensorType) and onednn_refusal(t.dtype, torch.device(t.device)) is None


def _only_user(node: fx.Node):
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _activation_after(value: fx.Node, readers):
    """(act, act_args, its nodes, last one first) when `readers` (the readers of `value`) are
    exactly a supported activation of `value`, else None. SiLU also as `value * sigmoid(value)`,
    as decompositions spell it."""
    if len(readers) == 2:
        sig = next((r for r in readers if r.target is aten.sigmoid.default and r.args[0] is value), None)
        mul = next((r for r in readers if r.target is aten.mul.Tensor and r is not sig), None)
        if sig is not None and mul is not None and set(mul.args[:2]) == {value, sig} and list(sig.users) == [mul]:
            return "silu", [], [mul, sig]
        return None
    if len(readers) != 1:
        return None
    node = readers[0]
    if node.op != "call_function" or not node.args or node.args[0] is not value:
        return None
    t, rest, kw = node.target, node.args[1:], node.kwargs
    if t is aten.relu.default:
        return "relu", [], [node]
    if t is aten.hardtanh.default:
        lo, hi = (list(rest) + [-1.0, 1.0][len(rest):])[:2]
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi))
        return ("hardtanh", [float(lo), float(hi)], [node]) if ok and not kw else None
    if t is aten.gelu.default:
        approximate = rest[0] if rest else kw.get("approximate", "none")
        return ("gelu-tanh" if approximate == "tanh" else "gelu"), [], [node]
    simple = {aten.silu.default: "silu", aten.sigmoid.default: "sigmoid", aten.tanh.default: "tanh",
              aten.hardswish.default: "hardswish"}
    return (simple[t], [], [node]) if t in simple and not rest and not kw else None


def _residual(node: fx.Node, value: fx.Node):
    """The other operand when `node` is `value + other` (same shape and dtype, alpha 1)."""
    if node is None or node.op != "call_function" or node.target is not aten.add.Tensor or node.kwargs:
        return None
    a, b = node.args[:2]
    other = b if a is value else a if b is value else None
    if not isinstance(other, fx.Node) or other is value:
        return None
    mine, theirs = node_type(value), node_type(other)
    if not isinstance(theirs, TensorType) or theirs.shape != mine.shape or theirs.dtype != mine.dtype:
        return None
    return other


def _replace(gm: fx.GraphModule, last: fx.Node, args: tuple, target, name: str, meta_of: fx.Node | None = None) -> fx.Node:
    """`target(*args)` in place of `last` (the last op absorbed), with the metadata (scope, type)
    of `meta_of` (the product: the absorbed ops keep its shape), by default `last`'s."""
    meta_of = meta_of if meta_of is not None else last
    with gm.graph.inserting_before(last):
        new = gm.graph.create_node("call_function", target, args, name=name)
    new.meta.update({k: meta_of.meta[k] for k in KEPT_META if k in meta_of.meta})
    last.replace_all_uses_with(new)
    return new


def _erase(gm: fx.GraphModule, nodes) -> None:
    """Erases `nodes`, in this order, each only if nothing reads it any more."""
    for n in nodes:
        if not n.users:
            gm.graph.erase_node(n)


def _wanted(choices, op: str, name: str, m, n: int, k: int) -> bool:
    """The choices object's preference (every legal product without one: fastc-opt)."""
    if choices is None:
        return True
    return choices.library_product(KernelFeatures(name, "library", "cpu", sizes={"M": m, "N": n, "K": k}, ops=1,
                                                  op_counts={op: 1}, dtype="float32"))


def _rows(t: TensorType, last: int = 1):
    """The product of `t`'s dimensions but the last `last`, or None when one is symbolic."""
    rows = 1
    for d in t.shape[:len(t.shape) - last]:
        if not isinstance(d, int):
            return None
        rows *= d
    return rows


def _fuse_conv(gm: fx.GraphModule, conv: fx.Node, choices=None) -> int:
    x, w, b, stride, padding, dilation, transposed, _, groups = conv.args
    if transposed or not is_constant(w) or (b is not None and not is_constant(b)) or len(stride) != 2:
        return 0
    out, wt = node_type(conv), constant_value(w)
    pixels = None  # output positions (batch x height x width), when static
    if isinstance(out, TensorType) and all(isinstance(d, int) for d in out.shape):
        pixels = out.shape[0] * out.shape[2] * out.shape[3]
    if not _wanted(choices, "fastc.conv2d_act", conv.name, pixels, wt.shape[0], wt[0].numel()):
        return 0
    if not isinstance(x, fx.Node) or any(not isinstance(v, int) for v in (*stride, *padding, *dilation, groups)):
        return 0
    absorbed, value, residual, act = [conv], conv, None, ("none", [])
    add = _only_user(value)
    other = _residual(add, value)
    if other is not None:
        residual, value = other, add
        absorbed.append(add)
    found = _activation_after(value, list(value.users))
    if found is not None:
        act, value = found[:2], found[2][0]
        absorbed += reversed(found[2])
    new = _replace(gm, value, (x, w, b, list(stride), list(padding), list(dilation), groups, residual,
                               act[0], act[1], False), CONV2D_ACT, f"{conv.name}_act", meta_of=conv)
    _erase(gm, reversed(absorbed))
    return 1


def _fuse_linear(gm: fx.GraphModule, product: fx.Node, choices=None) -> int:
    m = match_product(product)
    if m is None:
        return 0
    out = node_type(product)
    rows = _rows(out) if isinstance(out, TensorType) else None
    if not _wanted(choices, "fastc.linear_act", product.name, rows, m.weight.shape[0], m.weight.shape[1]):
        return 0
    x, operand, bias = product_operands(product)
    reshape = _only_reader(product)
    if reshape is None or reshape.target not in RESHAPES or reshape.args[0] is not product:
        reshape = None
    shaped = reshape if reshape is not None else product
    found = _activation_after(shaped, [u for u in shaped.users if u.target is not aten.sym_size.int])
    act = found[:2] if found else ("none", [])
    weight = _weight_node(gm, operand, m, product)
    fused = _replace(gm, product, (x, weight, bias, None, act[0], act[1]), LINEAR_ACT, f"{product.name}_act")
    gm.graph.erase_node(product)
    if found is not None and reshape is not None:
        # act(reshape(product)) == reshape(act(product)): the reshape moves after the new op
        # (to its own place: what reads its sizes may come before the activation).
        last = found[2][0]
        with gm.graph.inserting_before(reshape):
            moved = gm.graph.create_node("call_function", reshape.target, (fused, *reshape.args[1:]),
                                         dict(reshape.kwargs), name=f"{reshape.name}_act")
        moved.meta.update({k: last.meta[k] for k in ("val", "tensor_meta", "type") if k in last.meta})
        moved.meta.update({k: reshape.meta[k] for k in KEPT_META if k in reshape.meta and k not in moved.meta})
        last.replace_all_uses_with(moved)
        _erase(gm, found[2])
        reshape.replace_all_uses_with(moved)
        gm.graph.erase_node(reshape)
    elif found is not None:
        found[2][0].replace_all_uses_with(fused)
        _erase(gm, found[2])
    _erase(gm, _weight_chain(operand))
    return 1


def _only_reader(node: fx.Node):
    """The one user of `node` other than those reading its sizes, else None."""
    users = [u for u in node.users if u.target is not aten.sym_size.int]
    return users[0] if len(users) == 1 else None


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
    """The views from the product's weight operand down to the constant, operand first."""
    chain = []
    while isinstance(operand, fx.Node) and operand.op == "call_function":
        chain.append(operand)
        operand = operand.args[0]
    return chain + ([operand] if isinstance(operand, fx.Node) else [])


# Pooling ops that take any layout and keep their input's (a channels-last input gives a
# channels-last result: ATen's fast path for them): between convolutions they pass the layout on.
LAYOUT_KEEPING_POOLS = (aten.max_pool2d_with_indices.default, aten.max_pool2d.default,
                        aten.avg_pool2d.default)


def _free_layouts(gm: fx.GraphModule) -> None:
    """any_layout on each conv2d_act read only by other conv2d_act ops (as input or residual),
    directly or through max / average pooling whose results only conv2d_act ops read."""
    for n in gm.graph.nodes:
        if n.target is CONV2D_ACT and _read_in_any_layout(n):
            n.update_arg(10, True)


def _read_in_any_layout(value: fx.Node) -> bool:
    """Whether every reader of `value` takes it in any layout and gives only conv2d_act ops a
    result in that layout."""
    import operator
    if not value.users:
        return False
    for u in value.users:
        if u.target is CONV2D_ACT:
            continue
        if u.target in LAYOUT_KEEPING_POOLS and u.args[0] is value:
            if u.target is aten.max_pool2d_with_indices.default:  # only its values read
                if all(g.target is operator.getitem and g.args[1] == 0 and _read_in_any_layout(g)
                       for g in u.users) and u.users:
                    continue
            elif _read_in_any_layout(u):
                continue
        return False
    return True


def _linear_on_nd_inputs(gm: fx.GraphModule) -> None:
    """view(linear_act(view(t, [M, K])), [*lead, N]) -> linear_act(t) when t is [*lead, K]: a
    linear layer takes N-D input as it is (two fewer steps at run time)."""
    for n in [n for n in gm.graph.nodes if n.target is LINEAR_ACT]:
        x, out_view = n.args[0], _only_reader(n)
        if not (isinstance(x, fx.Node) and x.target in RESHAPES and out_view is not None
                and out_view.target in RESHAPES and out_view.args[0] is n):
            continue
        t, x_type, out_type = x.args[0], node_type(x), node_type(out_view)
        t_type = node_type(t) if isinstance(t, fx.Node) else None
        if not (isinstance(t_type, TensorType) and isinstance(x_type, TensorType) and isinstance(out_type, TensorType)):
            continue
        if len(x_type.shape) != 2 or t_type.shape[-1] != x_type.shape[-1] or \
                tuple(out_type.shape) != (*t_type.shape[:-1], node_type(n).shape[-1]):
            continue
        n.update_arg(0, t)
        n.meta.update({k: out_view.meta[k] for k in ("val", "tensor_meta", "type") if k in out_view.meta})
        out_view.replace_all_uses_with(n)
        gm.graph.erase_node(out_view)
        if not x.users:
            gm.graph.erase_node(x)
