"""Schedules: how a planned kernel runs (block sizes, warps, stages, threads), as plain data.

A schedule never changes what a kernel computes. Which schedule a kernel runs under is the
choices object's call (fastc.costmodel); which schedules are legal and worth trying is code
generation's (fastc.codegen.schedule). This type is what the two exchange, so it lives here,
below both.
"""
from __future__ import annotations

from dataclasses import dataclass


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
    parallel: bool = False  # native CPU: the kernel split by rows on torch's OpenMP threads
    tile: int = 0           # native CPU: unused since threads split rows (kept: old records parse)
    # Native CPU loop schedule, applied to each of a kernel's root linalg ops with MLIR's
    # transform dialect (codegen/cpu/tiling.py): every parallel loop but the innermost tiled at 1
    # and the last of those at `tile_outer` (0: the outer loops are left whole), the innermost
    # parallel loop at `tile_inner` (0: whole); the root's producers fused into its tile loops
    # (tile-and-fuse); `vectorize`: the tiled ops vectorized by linalg; `unroll`: the innermost
    # tile loop unrolled that many times. All zero / False / 1: the kernel's loops as lowered.
    tile_outer: int = 0
    tile_inner: int = 0
    vectorize: bool = False
    unroll: int = 1

    @property
    def loops(self) -> bool:
        """Whether this (native CPU) schedule transforms the kernel's loops."""
        return bool(self.tile_outer or self.tile_inner or self.vectorize or self.unroll > 1)

    def constexprs(self, kind: str) -> dict[str, int]:
        """The block sizes a kernel of `kind` takes as `tl.constexpr` arguments."""
        names = {"pointwise": ("XBLOCK",), "reduction": ("XBLOCK", "RBLOCK"),
                 "matmul": ("BLOCK_M", "BLOCK_N", "BLOCK_K", "GROUP_M")}[kind]
        return {n: getattr(self, n) for n in names}


def next_pow2(n: int) -> int:
    return 1 if n <= 1 else 1 << (int(n) - 1).bit_length()
