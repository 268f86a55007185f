"""The MLIR pass pipeline from linalg on tensors (entry functions in destination-passing style)
to the LLVM dialect. One list, read top to bottom; a schedule only adds or tunes steps."""
from __future__ import annotations

import re

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
        # A kernel that only copies (a clone, a contiguous of a transpose) bufferizes to
        # memref.copy, which lowers to a runtime call for strided layouts: make it a loop nest.
        COPIES_AS_LOOPS,
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


# Not an MLIR pass: `run_pipeline` rewrites memref.copy ops into linalg.copy at this point.
COPIES_AS_LOOPS = "fastc-copies-as-linalg"


def pipeline_text(schedule: Schedule, threads: int) -> str:
    return "builtin.module(" + ", ".join(lowering_pipeline(schedule, threads)) + ")"


def run_pipeline(module, schedule: Schedule, threads: int):
    """Runs the pipeline on `module` (parsed in its context); returns the lowered module."""
    from torch_mlir import ir, passmanager
    steps = lowering_pipeline(schedule, threads)
    cut = steps.index(COPIES_AS_LOOPS)
    context = module.context
    with context:
        passmanager.PassManager.parse("builtin.module(" + ", ".join(steps[:cut]) + ")").run(module.operation)
        text = str(module)
        if "memref.copy" in text:
            module = ir.Module.parse(copies_as_linalg(text), context)
        passmanager.PassManager.parse("builtin.module(" + ", ".join(steps[cut + 1:]) + ")").run(module.operation)
    return module


_COPY = re.compile(r"^(\s*)memref\.copy (%[\w.#]+), (%[\w.#]+) : (.+) to (.+)$", re.M)


def copies_as_linalg(text: str) -> str:
    return _COPY.sub(lambda m: f"{m.group(1)}linalg.copy ins({m.group(2)} : {m.group(4)}) "
                               f"outs({m.group(3)} : {m.group(5)})", text)
