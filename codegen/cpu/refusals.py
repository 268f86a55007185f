"""What the native CPU target refuses by dtype and size, and why: such kernels raise Unsupported
and run as ATen. (Ops it refuses, float argmax/argmin for one, are the op table's:
codegen/refusals.py, stage 01-legal-fx.)

Each refusal names a case where torch-mlir or LLVM's JIT would compute something other than eager
does (or abort the process); the reason lands in the kernel's fallback entry of the report.
"""
from __future__ import annotations

import sympy
import torch

from ..errors import Unsupported
from .subgraph import example_value, size_expr

# Dtypes MLIR has a type for that the native target still refuses.
REFUSED_DTYPES = {
    torch.uint8: "torch-mlir lowers it as signed i8: wrong comparisons and division",
    torch.int8: "torch-mlir aborts the process converting a scalar to int8",
    torch.bfloat16: "LLVM's JIT has no __truncsfbf2 to round to bfloat16",
}

# Empty tensors run as ATen: there is nothing to compute, and torch-mlir's lowerings do not
# follow ATen's conventions for reductions over no elements (var/std of none is NaN in ATen,
# -0.0 from torch-mlir's division by N - correction = -1).
EMPTY = "empty tensors (no elements) run as ATen"


def refuse_dtypes(kernel) -> None:
    for n in [*kernel.inputs, *kernel.nodes]:
        for v in torch.utils._pytree.tree_leaves(example_value(n)):
            if isinstance(v, torch.Tensor) and v.dtype in REFUSED_DTYPES:
                raise Unsupported(f"{n.name}: dtype {v.dtype} on the native CPU target "
                                  f"({REFUSED_DTYPES[v.dtype]})")


def refuse_overflowing_scalars(kernel) -> None:
    """A float constant outside a half-precision tensor's range (`x * 1e20` on float16): eager
    computes in float32 and rounds once (0 * 1e20 = 0), while torch-mlir rounds the constant to
    the tensor's type first (0 * inf = NaN). Such kernels run as ATen."""
    for n in kernel.nodes:
        val = example_value(n)
        if not isinstance(val, torch.Tensor) or val.dtype not in (torch.float16, torch.bfloat16):
            continue
        limit = torch.finfo(val.dtype).max
        for a in torch.utils._pytree.tree_leaves((n.args, n.kwargs)):
            if isinstance(a, float) and abs(a) > limit and abs(a) != float("inf"):
                raise Unsupported(f"{n.name}: constant {a!r} overflows {val.dtype} "
                                  "(eager computes it in float32)")


def refuse_empty(kernel) -> bool:
    """Raises Unsupported for a kernel with a statically empty input or output; returns whether
    some input size is symbolic (then `NativeKernel.run` checks at each call)."""
    dynamic = False
    for n in [*kernel.inputs, *kernel.outputs]:
        val = example_value(n)
        if not isinstance(val, torch.Tensor):
            continue
        sizes = [size_expr(s) for s in val.shape]
        if any(not isinstance(s, sympy.Basic) and s == 0 for s in sizes):
            raise Unsupported(f"{n.name}: {EMPTY}")
        dynamic = dynamic or (n in kernel.inputs and any(isinstance(s, sympy.Basic) for s in sizes))
    return dynamic

