"""What each op is to the kernel planner: pointwise, a view, a reduction, a matrix product, or
none of these (it then runs as an ATen call). Facts only; no preferences here."""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.op_facts import VIEW_OPS, is_mutating, is_random
from fastc.ir.types import TensorType, TupleType, node_type

aten = torch.ops.aten

MATMULS = {aten.mm.default, aten.addmm.default, aten.bmm.default}

# reduction op -> where its reduced dims are: ("arg", i) = dims argument at position i,
# "all" = every dim, ("last", i) = the last len(args[i]) dims, ("dim", i) = one dim at i.
REDUCTIONS = {
    aten.sum.dim_IntList: ("arg", 1), aten.sum.default: "all",
    aten.mean.dim: ("arg", 1), aten.mean.default: "all",
    aten.amax.default: ("arg", 1), aten.amin.default: ("arg", 1),
    aten.var_mean.correction: ("arg", 1), aten.var.correction: ("arg", 1),
    aten.prod.dim_int: ("dim", 1), aten.any.dim: ("dim", 1), aten.any.dims: ("arg", 1),
    aten.argmax.default: ("dim", 1), aten.argmin.default: ("dim", 1),
    aten._softmax.default: ("dim", 1), aten._log_softmax.default: ("dim", 1),
    aten.native_layer_norm.default: ("last", 1),
}

# Elementwise in effect: every element of the result is the same scalar.
FILLS = {aten.full_like.default, aten.zeros_like.default, aten.ones_like.default}

# Views a kernel can express as index arithmetic over the same elements.
KERNEL_VIEWS = VIEW_OPS - {aten.as_strided.default, aten.diagonal.default}

_FLOATS_AND_INTS = {torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                    torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}


@dataclass(frozen=True)
class OpClass:
    kind: str                       # "pointwise", "view", "reduction", "matmul", "getitem"
    shape: tuple = ()               # pointwise/view/matmul: output shape; reduction: input shape
    reduced: tuple[int, ...] = ()   # reduction: the reduced dims, sorted, non-negative


def classify(node: fx.Node) -> OpClass | None:
    """The op's class for kernel planning, or None if it must run as ATen."""
    if node.op != "call_function" or is_mutating(node) or is_random(node):
        return None
    target = node.target
    if target is operator.getitem:
        return OpClass("getitem")
    if not _supported_types(node):
        return None
    out = node_type(node)
    if target in MATMULS:
        return OpClass("matmul", out.shape)
    if target in REDUCTIONS:
        x = node_type(node.args[0])
        if not isinstance(x, TensorType):
            return None
        dims = _reduced_dims(target, node, len(x.shape))
        # No dims to reduce (a 0-d input): nothing for a reduction kernel to do; runs as ATen.
        return None if not dims else OpClass("reduction", x.shape, dims)
    if target in KERNEL_VIEWS and isinstance(out, TensorType):
        return OpClass("view", out.shape)
    if isinstance(target, torch._ops.OpOverload) and isinstance(out, TensorType) and (
            torch.Tag.pointwise in target.tags or _is_cast(node) or target in FILLS):
        return OpClass("pointwise", out.shape)
    return None


def _is_cast(node: fx.Node) -> bool:
    """`_to_copy` that only changes dtype (same device, layout and memory format)."""
    if node.target != aten._to_copy.default:
        return False
    allowed = {"dtype"}
    return set(node.kwargs) <= allowed


def _supported_types(node: fx.Node) -> bool:
    types = [node_type(node)] + [node_type(a) for a in node.all_input_nodes]
    tensors = []
    for t in types:
        if isinstance(t, TupleType):
            tensors += [x for x in t.items if isinstance(x, TensorType)]
        elif isinstance(t, TensorType):
            tensors.append(t)
        elif t is None:
            return False
    devices = {t.device for t in tensors}
    return len(devices) <= 1 and all(t.dtype in _FLOATS_AND_INTS for t in tensors)


def _reduced_dims(target, node: fx.Node, rank: int):
    if rank == 0:
        return ()  # dim 0 of a 0-d tensor is the tensor itself: nothing is reduced
    rule = REDUCTIONS[target]
    if rule == "all":
        return tuple(range(rank))
    kind, index = rule
    arg = node.args[index] if len(node.args) > index else node.kwargs.get("dim")
    if kind == "last":
        return tuple(range(rank - len(arg), rank))
    if kind == "dim":
        if arg is None or not isinstance(arg, int):
            return None
        arg = [arg]
    if arg is None or (isinstance(arg, (list, tuple)) and len(arg) == 0):
        return tuple(range(rank))
    if not all(isinstance(d, int) for d in arg):
        return None
    return tuple(sorted({d % rank for d in arg}))
