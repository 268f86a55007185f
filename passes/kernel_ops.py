"""What each op is to the kernel planner: pointwise, a view, a reduction, a matrix product, or
none of these (it then runs as an ATen call). Facts only, read from the op table
(fastc.ir.op_table): an op is planned for a target only where the table says the target's code
generator lowers it. No preferences here."""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.op_facts import is_mutating, is_random
from fastc.ir.op_table import OP_TABLE, TARGETS, reduced_dims, refusal
from fastc.ir.types import TensorType, TupleType, node_type

MATMULS = {op for op, e in OP_TABLE.items() if e.kind == "matmul"}
REDUCTIONS = {op for op, e in OP_TABLE.items() if e.kind == "reduction"}

_FLOATS_AND_INTS = {torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int64,
                    torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool}


@dataclass(frozen=True)
class OpClass:
    kind: str                       # "pointwise", "view", "reduction", "matmul", "getitem"
    shape: tuple = ()               # pointwise/view/matmul: output shape; reduction: input shape
    reduced: tuple[int, ...] = ()   # reduction: the reduced dims, sorted, non-negative


def classify(node: fx.Node, target: str = "aten") -> OpClass | None:
    """The op's class for kernel planning, or None if it must run as ATen (on `target`)."""
    if node.op != "call_function" or is_mutating(node) or is_random(node):
        return None
    if node.target is operator.getitem:
        return OpClass("getitem")
    entry = OP_TABLE.get(node.target)
    if entry is None or not _supported_types(node) or not lowered(node, target):
        return None
    out = node_type(node)
    if entry.kind == "matmul":
        return OpClass("matmul", out.shape)
    if entry.kind == "reduction":
        x = node_type(node.args[0])
        dims = reduced_dims(node) if isinstance(x, TensorType) else None
        # No dims to reduce (a 0-d input): nothing for a reduction kernel to do; runs as ATen.
        return OpClass("reduction", x.shape, dims) if dims else None
    return OpClass(entry.kind, out.shape) if isinstance(out, TensorType) else None


def lowered(node: fx.Node, target: str) -> bool:
    """Whether the code generator of `target` lowers `node`, by the op table. A target without one
    ("aten", or none named: fastc-opt) plans what some code generator lowers."""
    return any(refusal(node, t) is None for t in ((target,) if target in TARGETS else TARGETS))


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
