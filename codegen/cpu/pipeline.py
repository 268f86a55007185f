"""The MLIR pass pipeline from linalg on tensors (entry functions in destination-passing style)
to the LLVM dialect. One list, read top to bottom; a schedule only adds or tunes steps."""
from __future__ import annotations

from ..schedule import Schedule


def lowering_pipeline(schedule: Schedule, threads: int) -> list[str]:
    tile = []
    if schedule.parallel and schedule.tile:
        tile = [f"func.func(scf-parallel-loop-tiling{{parallel-loop-tile-sizes={schedule.tile}}})"]
    return [
        # Tensors: inline the torch-mlir bodies into the entry functions, fuse elementwise
        # producers into their consumers, and let outputs be written in place.
        "inline",
        "symbol-dce",
        "func.func(linalg-fuse-elementwise-ops, canonicalize, cse)",
        "func.func(eliminate-empty-tensors)",
        # Buffers: tensors become memrefs over the caller's storage; temporaries are freed.
        "one-shot-bufferize{bufferize-function-boundaries=false}",
        "canonicalize",
        "buffer-deallocation-pipeline",
        # Loops: parallel dimensions become scf.parallel, reductions scf.for.
        "func.func(convert-linalg-to-parallel-loops)",
        "canonicalize",
        *tile,
        # Threads: the outermost parallel loops become OpenMP work-sharing loops.
        *([f"convert-scf-to-openmp{{num-threads={threads}}}", "func.func(canonicalize)"] if schedule.parallel else []),
        # LLVM: LLVM's own optimizer (O3, host CPU) then vectorizes the inner loops.
        "lower-affine",
        "convert-scf-to-cf",
        "expand-strided-metadata",
        "finalize-memref-to-llvm",
        "convert-math-to-llvm",
        "convert-math-to-libm",
        "convert-arith-to-llvm",
        "convert-cf-to-llvm",
        "convert-func-to-llvm",
        "convert-openmp-to-llvm",
        "convert-index-to-llvm",
        "reconcile-unrealized-casts",
    ]


def pipeline_text(schedule: Schedule, threads: int) -> str:
    return "builtin.module(" + ", ".join(lowering_pipeline(schedule, threads)) + ")"
