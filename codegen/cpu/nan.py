"""NaN-propagating max and min in torch-mlir's linalg.

torch-mlir lowers aten.maximum, minimum, clamp, clamp_min/max, hardtanh and relu6 to
`select(cmpf(a, b), a, b)`. A comparison with NaN is false (ordered predicates) or true
(unordered ones), so such a select returns the other operand or the bound where eager PyTorch
returns NaN: clamp(nan, -1, 1) gave -1. `propagate_nan` rewrites every select of one of its own
comparison's two operands into arith.maximumf / minimumf, which return NaN when either operand is
NaN (and which LLVM vectorizes as well as the select).

Each aten op is one linalg.generic in torch-mlir's output, so a select that picks one of the
operands of the comparison it tests comes from one of those ops, never from a user's
`torch.where(x > y, x, y)` (its comparison and select are two generics).
"""
from __future__ import annotations

# arith.cmpf predicates (arith::CmpFPredicate) that mean "a > b" / "a >= b" and "a < b" / "a <= b".
_GREATER = {2, 3, 9, 10}   # ogt, oge, ugt, uge
_LESS = {4, 5, 11, 12}     # olt, ole, ult, ule


def propagate_nan(module) -> int:
    """Rewrites the max/min selects of `module` (see the module docstring); returns how many."""
    from torch_mlir import ir
    from torch_mlir.dialects import arith

    selects = []

    def visit(op):
        if op.name == "arith.select":
            selects.append(op)
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
    rewritten = 0
    for op in selects:
        cond, picked, other = op.operands
        cmp = cond.owner
        if not isinstance(cmp, (ir.Operation, ir.OpView)) or cmp.name != "arith.cmpf":
            continue
        a, b = cmp.operands
        predicate = ir.IntegerAttr(cmp.attributes["predicate"]).value
        if predicate not in _GREATER and predicate not in _LESS:
            continue
        if picked == a and other == b:
            larger = predicate in _GREATER     # picks a when a > b: max(a, b)
        elif picked == b and other == a:
            larger = predicate in _LESS        # picks b when a < b: max(a, b)
        else:
            continue
        with ir.InsertionPoint(op), op.location:
            new = (arith.MaximumFOp if larger else arith.MinimumFOp)(a, b)
        op.result.replace_all_uses_with(new.result)
        op.erase()
        rewritten += 1
    return rewritten
