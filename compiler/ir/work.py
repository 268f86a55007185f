"""The work of a planned graph: floating-point operations and bytes moved, per kernel and per
kind of ATen op left outside kernels. What the roofline view (fastc explain --roofline) sets
against measured times.

FLOPs are counted the usual way (a multiply-add is 2):

- mm, addmm, bmm, baddbmm, linear: 2 * M * N * K (+ M * N for a bias);
- convolution: 2 * N * C_out * (spatial output) * (C_in / groups) * (kernel elements) (+ the bias);
- scaled dot-product attention: 4 * B * H * L * S * D (the two products; softmax is not counted);
- fastc.conv2d_act / fastc.linear_act: their convolution or product (epilogues not counted);
- block ops (fastc.convfirst_block, mbconv_block, mlp_block): the products and convolutions of
  the block (per element of its input's rows, 2 per multiply-add), so their bytes, read and
  written once, are the block's input, output and weights;
- any other op that computes values (elementwise, reductions, copies): one per element of its
  largest tensor input or output;
- views and getitem: none (they move nothing either).

Bytes: a kernel reads its inputs and writes its outputs once (KernelPlan's bytes_read and
bytes_written); an ATen op reads its tensor inputs and writes its outputs. Sizes that are not
static (dynamic shapes) give no row: the roofline needs numbers.
"""
from __future__ import annotations

import math
import operator

import sympy
import torch
import torch.fx as fx

from .kernel_plan import KernelPlan
from .op_facts import VIEW_OPS
from .types import TensorType, TupleType, node_type

aten = torch.ops.aten

_PRODUCTS = {aten.mm.default, aten.addmm.default, aten.bmm.default, aten.baddbmm.default, aten.linear.default}
_CONVOLUTIONS = {aten.convolution.default}
# Ops that return views of their input (beyond VIEW_OPS): no work, nothing moved.
_FREE = {aten.split.Tensor, aten.split_with_sizes.default, aten.unbind.int, aten.chunk.default,
         aten.unflatten.int, aten.view_as_real.default, aten.view_as_complex.default}
_ATTENTION = {aten._scaled_dot_product_flash_attention_for_cpu.default, aten.scaled_dot_product_attention.default,
              aten._scaled_dot_product_flash_attention.default, aten._scaled_dot_product_efficient_attention.default}


def _shape(node) -> tuple | None:
    t = node_type(node) if isinstance(node, fx.Node) else None
    if isinstance(t, TupleType):
        t = t.items[0] if t.items else None
    if not isinstance(t, TensorType) or not all(isinstance(d, int) for d in t.shape):
        return None
    return tuple(t.shape)


def _numel(shape) -> int:
    return math.prod(shape) if shape is not None else 0


def op_flops(node: fx.Node) -> int | None:
    """Floating-point operations of one op (see the module's docstring); None where a size is
    not static."""
    if node.op != "call_function" or _moves_nothing(node):
        return 0
    target = node.target
    if target in _PRODUCTS:
        out = _shape(node)
        if target is aten.linear.default:
            x = _shape(node.args[0])
            k = x[-1] if x else None
        else:
            left = node.args[1] if target in (aten.addmm.default, aten.baddbmm.default) else node.args[0]
            x = _shape(left)
            k = x[-1] if x else None
        if out is None or k is None:
            return None
        bias = target in (aten.addmm.default, aten.baddbmm.default) or (
            target is aten.linear.default and len(node.args) > 2 and node.args[2] is not None)
        return 2 * _numel(out) * k + (_numel(out) if bias else 0)
    if target in _CONVOLUTIONS:
        out, w = _shape(node), _shape(node.args[1])
        if out is None or w is None:
            return None
        per_output = 2 * _numel(w[1:])  # (C_in / groups) * kernel elements, a multiply-add each
        bias = node.args[2] is not None
        return _numel(out) * per_output + (_numel(out) if bias else 0)
    name = str(target).removesuffix(".default")
    if name == _CONV2D_ACT:
        out, w = _shape(node), _shape(node.args[1])
        return None if out is None or w is None else _numel(out) * 2 * _numel(w[1:])
    if name == _LINEAR_ACT:
        out, w = _shape(node), _shape(node.args[1])
        return None if out is None or w is None else 2 * _numel(out) * w[1]
    if name in _BLOCKS:
        return _block_flops(node, name)
    if target in _ATTENTION:
        q, k = _shape(node.args[0]), _shape(node.args[1])
        if q is None or k is None:
            return None
        *batch, length, depth = q
        source = k[-2]
        return 4 * _numel(batch) * length * source * depth
    out = _shape(node)
    if out is None:
        return None
    return max([_numel(out)] + [_numel(_shape(a)) for a in node.all_input_nodes if _shape(a) is not None])


_CONV2D_ACT, _LINEAR_ACT = "fastc.conv2d_act", "fastc.linear_act"
_BLOCKS = ("fastc.convfirst_block", "fastc.convnext_block", "fastc.inverted_block", "fastc.mbconv_block",
           "fastc.mlp_block")


def _block_flops(node: fx.Node, name: str) -> int | None:
    x = _shape(node.args[0])
    weights = [_shape(a) for a in node.args[1:] if isinstance(a, fx.Node)]
    if x is None or any(w is None for w in weights):
        return None
    if name == "fastc.mlp_block":
        rows = _numel(x[:-1])
        products = [w for w in weights if len(w) == 2]
        return rows * sum(2 * _numel(w) for w in products)
    pixels = x[0] * _numel(x[2:])
    convs = [w for w in weights if len(w) == 4]
    if name == "fastc.inverted_block":   # the depthwise conv and the projection at the output's pixels
        out = _shape(node)
        if out is None:
            return None
        return pixels * 2 * _numel(convs[0]) + out[0] * _numel(out[2:]) * sum(2 * _numel(w) for w in convs[1:])
    return pixels * sum(2 * _numel(w) for w in convs)


def _moves_nothing(node: fx.Node) -> bool:
    return node.target in VIEW_OPS or node.target in _FREE or node.target is operator.getitem


def _bytes(nodes) -> int | None:
    total = 0
    for n in nodes:
        t = node_type(n)
        types = t.items if isinstance(t, TupleType) else [t]
        for u in types:
            if not isinstance(u, TensorType):
                continue
            if not all(isinstance(d, int) for d in u.shape):
                return None
            total += _numel(u.shape) * _itemsize(u.dtype)
    return total


def _itemsize(dtype) -> int:
    try:
        return torch.empty((), dtype=getattr(torch, str(dtype).removeprefix("torch."))).element_size()
    except (AttributeError, TypeError):
        return 4


def graph_work(gm: fx.GraphModule) -> list[dict]:
    """One row per planned kernel ({"name": "k3_reduction", "kind": "kernel", "ops": 5, "flops",
    "bytes"}), one per library call (a fastc op: {"name": node name, "kind": "library", ...}) and one per kind of ATen op outside kernels ({"name": "aten::mm", "kind": "aten",
    "ops": count, "flops", "bytes"} summed over its calls), in graph order; rows whose sizes are
    not all static are left out."""
    rows: list[dict] = []
    for k in KernelPlan.of(gm).kernels:
        flops = [op_flops(n) for n in k.nodes]
        moved = k.bytes_read() + k.bytes_written()
        if any(f is None for f in flops) or not isinstance(moved, int) and not (
                isinstance(moved, sympy.Basic) and moved.is_Integer):
            continue
        rows.append({"name": k.name, "kind": "kernel", "ops": len(k.nodes), "flops": sum(flops), "bytes": int(moved)})
    by_op: dict[str, dict] = {}
    for n in gm.graph.nodes:
        if n.op != "call_function" or "kernel" in n.meta or _moves_nothing(n):
            continue
        flops = op_flops(n)
        moved = _bytes([a for a in n.all_input_nodes] + [n])
        if flops is None or moved is None:
            continue
        schema = getattr(n.target, "_schema", None)
        name = schema.name if schema is not None else str(n.target)  # "aten::mm", as profiler traces name it
        if name.startswith("fastc::"):  # a library call: its own row, as the runner's range names it
            rows.append({"name": n.name, "kind": "library", "ops": 1, "flops": flops, "bytes": moved})
            continue
        row = by_op.setdefault(name, {"name": name, "kind": "aten", "ops": 0, "flops": 0, "bytes": 0})
        row["ops"] += 1
        row["flops"] += flops
        row["bytes"] += moved
    return rows + list(by_op.values())
