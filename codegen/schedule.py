"""Schedules: block sizes, warps and stages of a generated kernel.

Preferences only: a schedule never changes what a kernel computes, and every kernel is correct
under any schedule whose blocks are powers of two (matmul blocks at least 16). The launcher picks
a schedule per call from the real sizes, so one compiled kernel serves several shapes; a cost
model or autotuner can replace `heuristic_schedule` without touching the lowering.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Schedule:
    XBLOCK: int = 1024      # pointwise: elements per program; reduction: rows per program
    RBLOCK: int = 0         # reduction: elements of a row per loop step
    BLOCK_M: int = 0        # matmul tiles
    BLOCK_N: int = 0
    BLOCK_K: int = 0
    GROUP_M: int = 8        # matmul: tiles of GROUP_M rows of tiles run together (L2 reuse)
    num_warps: int = 4
    num_stages: int = 1
    parallel: bool = False  # native CPU: outermost parallel loops run on OpenMP threads
    tile: int = 0           # native CPU: tile of the outermost parallel loop (0: none)

    def constexprs(self, kind: str) -> dict[str, int]:
        """The block sizes a kernel of `kind` takes as `tl.constexpr` arguments."""
        names = {"pointwise": ("XBLOCK",), "reduction": ("XBLOCK", "RBLOCK"),
                 "matmul": ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M")}[kind]
        return {n: getattr(self, n) for n in names}


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()


PERSISTENT_MAX = 1024


def persistent_reduction(rnumel, limit: int = PERSISTENT_MAX) -> bool:
    """Whether a reduction over rows of `rnumel` elements (an int, or None when only known at run
    time) runs as one pass with the whole row in one block, rather than looping over the row."""
    return isinstance(rnumel, int) and 0 < rnumel <= limit


# Native CPU kernels below this many output elements run on one thread: starting OpenMP
# workers costs more than the work (measured on a 2-core EPYC: threads lose below ~1M floats).
PARALLEL_MIN_ELEMENTS = 1 << 20


def heuristic_schedule(kernel, sizes: dict[str, int], target: str = "triton") -> Schedule:
    """A schedule for `kernel` (a Kernel, a GeneratedKernel or a kind name) at `sizes`.

    sizes: pointwise {"xnumel"}; reduction {"xnumel" (rows), "rnumel" (row length)};
    matmul {"M", "N", "K"}. Native CPU kernels (target "cpu") take {"xnumel"} (output elements).
    """
    kind = kernel if isinstance(kernel, str) else kernel.kind
    if target == "cpu":
        return Schedule(XBLOCK=0, parallel=sizes["xnumel"] >= PARALLEL_MIN_ELEMENTS)
    if kind == "pointwise":
        block = min(1024, max(16, next_pow2(sizes["xnumel"])))
        return Schedule(XBLOCK=block, num_warps=4 if block >= 512 else 2)
    if kind == "reduction":
        rblock = min(1024, max(2, next_pow2(sizes["rnumel"])))
        xblock = min(max(1, 2048 // rblock), next_pow2(sizes["xnumel"]))
        return Schedule(XBLOCK=xblock, RBLOCK=rblock, num_warps=8 if rblock >= 1024 else 4)
    if kind == "matmul":
        def tile(n, cap):
            return min(cap, max(16, next_pow2(n)))
        return Schedule(BLOCK_M=tile(sizes["M"], 64), BLOCK_N=tile(sizes["N"], 64),
                        BLOCK_K=tile(sizes["K"], 32), num_warps=4, num_stages=3)
    raise ValueError(f"unknown kernel kind {kind!r} (valid: pointwise, reduction, matmul)")


def candidate_schedules(kind: str, sizes: dict[str, int], target: str = "triton") -> list[Schedule]:
    """Schedules worth measuring for `mode="max-autotune"`: the heuristic's first, then variants
    of block sizes and warps around it (all legal: the launcher widens blocks a kernel needs)."""
    base = heuristic_schedule(kind, sizes, target)
    out = [base]
    if target == "cpu":
        out += [Schedule(XBLOCK=0, parallel=False), Schedule(XBLOCK=0, parallel=True)]
        out += [Schedule(XBLOCK=0, parallel=True, tile=t) for t in (4, 16, 64)]
    elif kind == "pointwise":
        for block in (256, 512, 1024, 2048):
            for warps in (2, 4, 8):
                out.append(Schedule(XBLOCK=min(block, max(16, next_pow2(sizes["xnumel"]))), num_warps=warps))
    elif kind == "reduction":
        for xblock in (1, 2, 4, 8, 16):
            for warps in (2, 4, 8):
                out.append(replace(base, XBLOCK=min(xblock, next_pow2(sizes["xnumel"])), num_warps=warps))
    elif kind == "matmul":
        def tile(n, cap):
            return min(cap, max(16, next_pow2(n)))
        for bm, bn, bk, warps, stages in ((32, 32, 32, 4, 2), (64, 64, 32, 4, 3), (128, 64, 32, 4, 3),
                                          (64, 128, 32, 4, 3), (128, 128, 32, 8, 3), (128, 128, 64, 8, 4)):
            out.append(Schedule(BLOCK_M=tile(sizes["M"], bm), BLOCK_N=tile(sizes["N"], bn),
                                BLOCK_K=tile(sizes["K"], bk), num_warps=warps, num_stages=stages))
    unique = []
    for s in out:
        if s not in unique:
            unique.append(s)
    return unique
