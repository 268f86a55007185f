"""How the native CPU target runs a kernel plan: matrix products stay ATen calls (oneDNN/MKL),
their pointwise epilogues become native kernels.

Measured on a 2-core EPYC, a linalg.matmul lowered to loops and vectorized by LLVM runs 10-100x
slower than ATen's GEMM at transformer sizes, and the cost of an epilogue is the extra pass over
the product, which a native pointwise kernel saves just as well. So on this target a matmul
kernel loses its product op and keeps the rest as a pointwise kernel.
"""
from __future__ import annotations

import torch.fx as fx

from fastc.ir.kernel_plan import KernelPlan


def products_on_aten(gm: fx.GraphModule) -> int:
    """Unmarks the product op of every matmul kernel of `gm`'s plan; returns how many."""
    count = 0
    for k in KernelPlan.of(gm).kernels:
        if k.kind != "matmul":
            continue
        head = next((n for n in k.nodes if _is_product(n)), None)
        if head is None:
            continue
        head.meta.pop("kernel", None)
        head.meta.pop("kernel_kind", None)
        for n in k.nodes:
            if n is not head:
                n.meta["kernel_kind"] = "pointwise"
        count += 1
    return count


def _is_product(node: fx.Node) -> bool:
    name = getattr(node.target, "__name__", str(node.target))
    return name.split(".")[0] in ("mm", "addmm", "bmm", "baddbmm", "matmul")
