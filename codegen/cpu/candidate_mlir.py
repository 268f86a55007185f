"""What the cost model is told about a native kernel under a candidate: its MLIR at stage 07-loops.

`candidate_features(code, schedule, kernel)` runs the build's stages up to 07-loops (combined,
vector math, the schedule's tile-and-fuse and unrolling: stages.py, tiling.py) on the kernel
alone, in a context of its own, and hands the scheduled module to fastc.costmodel.mlir_features;
the candidate ATEN is described by the kernel's untransformed module. It is the MLIR the build
lowers next, but for linalg vectorization: vectorizing a function takes 0.3-0.7 s, twenty times
the tiling, so a vectorizing schedule is described by its tiled loops and its `vectorize` and
tile fields (the lanes its vectors will have), not by its vector ops. A schedule whose tiling does
not apply to the kernel raises (NativeBuildError): it is no candidate there.
"""
from __future__ import annotations

import dataclasses

from fastc.costmodel.features import ATEN
from fastc.costmodel.mlir_features import candidate_features as features_of

from ..schedule import Schedule
from .combine import KernelCode, combine
from .runtime import Diagnostics
from .stages import with_vector_math
from .tiling import schedule_loops

SERIAL = Schedule(XBLOCK=0, parallel=False)


def scheduled_text(code: KernelCode, schedule: Schedule) -> str:
    """The kernel's module after stage 07-loops under `schedule` (threads aside: a split kernel's
    chunk is the same code either way), as text."""
    with Diagnostics() as diagnostics:
        from torch_mlir.dialects import torch as torch_d
        torch_d.register_dialect(diagnostics.context)
        module = diagnostics.check(lambda: combine([code], diagnostics.context))
        module = diagnostics.check(lambda: with_vector_math(module))
        module = diagnostics.check(lambda: schedule_loops(module, schedule))
        return str(module)


def candidate_features(code: KernelCode, candidate, kernel=None, cache: dict | None = None) -> dict:
    """The cost model's features of the kernel `code` under `candidate` (ATEN or a Schedule).
    `kernel`: its fastc.costmodel.KernelFeatures at the problem; `cache` (per kernel) keeps the
    scheduled text per loop schedule, shared by the one- and many-thread variants."""
    schedule = SERIAL if candidate == ATEN else candidate
    loops = dataclasses.replace(schedule, parallel=False, vectorize=False)
    text = cache.get(loops) if cache is not None else None
    if text is None:
        text = scheduled_text(code, loops)
        if cache is not None:
            cache[loops] = text
    return features_of(text, schedule=None if candidate == ATEN else schedule, kernel=kernel,
                       is_aten=candidate == ATEN)
