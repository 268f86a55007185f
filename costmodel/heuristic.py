"""HeuristicChoices: fastc's rules of thumb, decided at compile time from the features alone.

How far to fuse (at most `max_ops` ops a kernel; epilogues and reductions fused), matrix products
as ATen calls on the native CPU target (ATen's GEMM beats generated loops 10-100x), block sizes
that cover the problem up to a cap, and threads (torch's, split by rows) only for big native kernels.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from fastc.ir.schedule import Schedule, next_pow2

from .choices import Choices
from .features import ATEN, FusionCandidate, KernelFeatures


#: Multiply-adds from which oneDNN's GEMM on a packed weight beats ATen's on the 2-core EPYC
#: (1.5-2.1x from 8M; tied at 1.7M, slower below: oneDNN's fixed cost per call is ~10 us more;
#: docs/benchmarks/cpu-products.md).
LIBRARY_LINEAR_MIN_MACS = 4_000_000


@dataclass(frozen=True)
class HeuristicChoices(Choices):
    max_ops: int = 64                # ops in one kernel, at most
    epilogues: bool = True           # fuse pointwise consumers into a matrix product
    reductions: bool = True          # fuse pointwise producers/consumers into a reduction
    products_on_cpu: bool = False    # matrix products as generated code on the native CPU target
    #: Native CPU kernels below this many output elements run on one thread (those of more on
    #: torch's threads, when they split by rows: codegen/cpu/split.py): ATen's own grain
    #: (at::internal::GRAIN_SIZE). A split kernel's fork and join on torch's libgomp team costs
    #: ~1 us on an idle 2-core EPYC; (8, 128, 96) RMS norm and add+relu kernels (98304 elements)
    #: ran 1.5-1.8x faster split (docs/cpu.md, Threads).
    parallel_min_elements: int = 1 << 15
    #: ... and below this many, the parallel schedule is not offered to the chooser up front (a
    #: split kernel's parallel entry comes with its serial build; this only spares measuring it).
    parallel_build_min_elements: int = 1 << 15

    def library_product(self, k: KernelFeatures) -> bool:
        """Convolutions always; matrix products of at least LIBRARY_LINEAR_MIN_MACS (or whose rows
        vary), where oneDNN can win. A smaller one stays an ATen call with its epilogue in a
        generated kernel, as before the library op existed: there ATen runs it either way, and a
        generated epilogue may fuse with what follows it."""
        if k.op_counts.get("fastc.linear_act") and k.sizes and k.sizes.get("M") is not None:
            return k.sizes["M"] * k.sizes["N"] * k.sizes["K"] >= LIBRARY_LINEAR_MIN_MACS
        return True

    def fuse(self, c: FusionCandidate) -> bool:
        if c.ops > self.max_ops:
            return False
        kinds = {c.producer_kind, c.consumer_kind}
        if "matmul" in kinds and not self.epilogues:
            return False
        if "reduction" in kinds and not self.reductions:
            return False
        return True

    def product_in_kernel(self, k: KernelFeatures) -> bool:
        return k.target != "cpu" or self.products_on_cpu

    def schedule(self, k: KernelFeatures) -> Schedule:
        sizes = k.sizes
        if k.target == "cpu":
            return Schedule(XBLOCK=0, parallel=sizes["xnumel"] >= self.parallel_min_elements)
        if k.kind == "pointwise":
            block = min(1024, max(16, next_pow2(sizes["xnumel"])))
            return Schedule(XBLOCK=block, num_warps=4 if block >= 512 else 2)
        if k.kind == "reduction":
            rblock = min(1024, max(2, next_pow2(sizes["rnumel"])))
            xblock = min(max(1, 2048 // rblock), next_pow2(sizes["xnumel"]))
            return Schedule(XBLOCK=xblock, RBLOCK=rblock, num_warps=8 if rblock >= 1024 else 4)
        if k.kind == "matmul":
            def tile(n, cap):
                return min(cap, max(16, next_pow2(n)))
            return Schedule(BLOCK_M=tile(sizes["M"], 64), BLOCK_N=tile(sizes["N"], 64),
                            BLOCK_K=tile(sizes["K"], 32), num_warps=4, num_stages=3)
        raise ValueError(f"unknown kernel kind {k.kind!r} (valid: pointwise, reduction, matmul)")

    def build_up_front(self, k: KernelFeatures, schedule: Schedule) -> bool:
        return k.sizes is None or k.sizes["xnumel"] >= self.parallel_build_min_elements  # None: dynamic

    def choose(self, k: KernelFeatures, candidates: Sequence, run: Callable | None = None,
               records: list | None = None):
        """The rules' schedule: generated code, never ATen, nothing measured. A library op's
        implementations (kind "library") come in the library's order of preference: the first."""
        if k.kind == "library":
            return candidates[0]
        pick = self.schedule(k)
        if pick in candidates:
            return pick
        return next((c for c in candidates if c != ATEN), candidates[0])
