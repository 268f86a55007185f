"""Which schedules a generated kernel may run under, and which are worth measuring.

Legality only: a schedule never changes what a kernel computes, and every kernel is correct under
any schedule whose blocks are powers of two (matmul blocks at least 16; the launcher widens a
block a kernel needs whole). Which schedule runs is the choices object's call (fastc.costmodel);
`Schedule` itself is plain data in fastc.ir.schedule, shared by both.
"""
from __future__ import annotations

from fastc.ir.schedule import Schedule, next_pow2

__all__ = ["PERSISTENT_MAX", "Schedule", "candidate_schedules", "next_pow2", "persistent_reduction"]

PERSISTENT_MAX = 1024


def persistent_reduction(rnumel, limit: int = PERSISTENT_MAX) -> bool:
    """Whether a reduction over rows of `rnumel` elements (an int, or None when only known at run
    time) runs as one pass with the whole row in one block, rather than looping over the row."""
    return isinstance(rnumel, int) and 0 < rnumel <= limit


# Native CPU loop schedules (codegen/cpu/tiling.py): (tile_outer, tile_inner, vectorize, unroll).
# Vectorizing needs a bounded tile (every loop tiled: tile_outer and tile_inner both set), or the
# vectors would be as big as the tensor.
CPU_LOOPS = [(1, 0, False, 1), (4, 0, False, 1), (16, 0, False, 1), (0, 64, False, 1),
             (1, 16, False, 1), (1, 64, False, 1), (1, 64, False, 4),
             (1, 8, True, 1), (1, 16, True, 1), (1, 64, True, 1), (4, 16, True, 1), (1, 32, True, 2)]

# Below this many output elements a kernel is not offered threads (a fork and join costs more).
CPU_PARALLEL_MIN = 1 << 14


def cpu_schedules(sizes: dict) -> list[Schedule]:
    """The native CPU schedule space: the kernel's loops as lowered, or tiled, fused, vectorized
    and unrolled (CPU_LOOPS); each on one thread or split by rows on torch's threads
    (codegen/cpu/split.py) when the kernel is big enough for threads to pay."""
    threads = [False, True] if (sizes or {}).get("xnumel", 0) >= CPU_PARALLEL_MIN else [False]
    out = [Schedule(XBLOCK=0, parallel=False), Schedule(XBLOCK=0, parallel=True)]
    for parallel in threads:
        for outer, inner, vectorize, unroll in CPU_LOOPS:
            out.append(Schedule(XBLOCK=0, parallel=parallel, tile_outer=outer, tile_inner=inner,
                                vectorize=vectorize, unroll=unroll))
    return out


def candidate_schedules(kind: str, sizes: dict[str, int], target: str = "triton") -> list[Schedule]:
    """Schedules worth measuring for `mode="max-autotune"`: variants of block sizes, warps,
    stages (and on the native CPU target, one thread or all of torch's) at these problem sizes."""
    out = []
    if target == "cpu":
        out += cpu_schedules(sizes)
    elif kind == "pointwise":
        for block in (256, 512, 1024, 2048):
            for warps in (2, 4, 8):
                out.append(Schedule(XBLOCK=min(block, max(16, next_pow2(sizes["xnumel"]))), num_warps=warps))
    elif kind == "reduction":
        rblock = min(1024, max(2, next_pow2(sizes["rnumel"])))  # a whole row a step, up to 1024
        for xblock in (1, 2, 4, 8, 16):
            for warps in (2, 4, 8):
                out.append(Schedule(XBLOCK=min(xblock, next_pow2(sizes["xnumel"])), RBLOCK=rblock, num_warps=warps))
    elif kind == "matmul":
        def tile(n, cap):
            return min(cap, max(16, next_pow2(n)))
        for bm, bn, bk, warps, stages in ((32, 32, 32, 4, 2), (64, 64, 32, 4, 3), (128, 64, 32, 4, 3),
                                          (64, 128, 32, 4, 3), (128, 128, 32, 8, 3), (128, 128, 64, 8, 4)):
            out.append(Schedule(BLOCK_M=tile(sizes["M"], bm), BLOCK_N=tile(sizes["N"], bn),
                                BLOCK_K=tile(sizes["K"], bk), num_warps=warps, num_stages=stages))
    else:
        raise ValueError(f"unknown kernel kind {kind!r} (valid: pointwise, reduction, matmul)")
    unique = []
    for s in out:
        if s not in unique:
            unique.append(s)
    return unique
