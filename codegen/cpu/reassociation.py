"""Stage 04-fixed, second fix-up: `fastmath<reassoc>` on the op that accumulates a reduction,
and on nothing else (see `relax_float_math`)."""
from __future__ import annotations


# Float ops that can combine a reduction's running value with the next element.
ACCUMULATING = frozenset({"arith.addf", "arith.mulf", "arith.maximumf", "arith.minimumf",
                          "arith.maxnumf", "arith.minnumf"})


def relax_float_math(module, context) -> int:
    """Lets LLVM reorder the accumulation of reductions, and nothing else; returns how many ops
    were marked.

    Eager PyTorch promises no order for the terms of a sum (ATen's own reductions are vectorized
    and split across threads), so the op that folds the next element into a reduction's running
    value gets `reassoc`: LLVM's loop vectorizer then keeps several partial sums. Every other float
    op stays strict IEEE arithmetic, as in eager: with `reassoc` on `x * 1000 * 1000` LLVM folds
    the constants into `x * 1e6`, which overflows float16 where eager does not, and `contract`
    would fuse `a * b + c` into an FMA that eager's pointwise kernels do not use.

    The accumulating op is the float add/mul/max/min of a reducing linalg op (a linalg.generic
    with a reduction iterator, or linalg.reduce) whose result is yielded into an output and whose
    operand is that output's block argument (the running value). This runs on torch-mlir's
    output, before linalg-fuse-elementwise-ops: producers fused into a reduction's body later
    are copied without flags, so they stay strict."""
    from torch_mlir import ir
    flags = ir.Attribute.parse("#arith.fastmath<reassoc>", context)
    marked = []

    def visit(op):
        if _is_reduction(op):
            marked.extend(_accumulators(op))
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
    for op in marked:
        op.attributes["fastmath"] = flags
    return len(marked)


def _is_reduction(op) -> bool:
    if op.name == "linalg.reduce":
        return True
    if op.name != "linalg.generic" or "iterator_types" not in op.attributes:
        return False
    return "reduction" in str(op.attributes["iterator_types"])


def _accumulators(op) -> list:
    """The ops of a reducing linalg op's body that combine an output's running value (its block
    argument) with another value and are yielded into that output."""
    from torch_mlir import ir
    if len(op.regions) != 1 or not op.regions[0].blocks:
        return []
    block = op.regions[0].blocks[0]
    ops = list(block.operations)
    if not ops or ops[-1].name != "linalg.yield":
        return []
    yielded = list(ops[-1].operands)
    args = list(block.arguments)
    outputs = len(op.results) or len(yielded)  # tensors: one result per output operand
    if outputs != len(yielded) or outputs > len(args):
        return []
    found = []
    for value, running in zip(yielded, args[len(args) - outputs:]):
        owner = value.owner
        if not isinstance(owner, (ir.Operation, ir.OpView)) or owner.name not in ACCUMULATING:
            continue
        if any(operand == running for operand in owner.operands):
            found.append(owner)
    return found
