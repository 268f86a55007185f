"""What the cost model is told about a native kernel under a candidate: its MLIR at stage 07-loops.

`candidate_features(code, schedule, kernel)` runs the build's stages up to 07-loops (combined,
vector math, the schedule's tile-and-fuse and unrolling: stages.py, tiling.py) on the kernel
alone and hands the scheduled module to fastc.costmodel.mlir_features; the candidate ATEN is
described by the kernel's untransformed module. It is the MLIR the build lowers next, but for
linalg vectorization: vectorizing a function takes 0.3-0.7 s, twenty times the tiling, so a
vectorizing schedule is described by its tiled loops and its `vectorize` and tile fields (the
lanes its vectors will have), not by its vector ops. A schedule whose tiling does not apply to
the kernel raises (NativeBuildError): it is no candidate there.

Describing is the cost of the model's choice at a kernel's first call, so it is kept small: the
module features of each loop schedule are computed once per kernel (the one- and many-thread
and vectorizing variants share them), on the module in memory (not printed and parsed again),
in an MLIR context reused by the thread's next CONTEXT_USES descriptions (making a context and
loading its dialects took 5 ms, a third of describing a small kernel's schedule).
"""
from __future__ import annotations

import dataclasses
import threading

from fastc.costmodel.features import ATEN
from fastc.costmodel.mlir_features import candidate_features as features_of
from fastc.costmodel.mlir_features import module_features

from ..schedule import Schedule
from .combine import KernelCode, combine
from .runtime import Diagnostics
from .stages import with_vector_math
from .tiling import schedule_loops

SERIAL = Schedule(XBLOCK=0, parallel=False)


#: Descriptions one thread makes in one MLIR context before it makes a new one (types and
#: attributes a context has uniqued stay in it as long as it lives).
CONTEXT_USES = 256
_THREAD = threading.local()


def _context():
    """This thread's describing context (torch's dialects registered), renewed every CONTEXT_USES."""
    uses = getattr(_THREAD, "uses", CONTEXT_USES)
    if uses >= CONTEXT_USES:
        from torch_mlir import ir
        from torch_mlir.dialects import torch as torch_d
        _THREAD.context = ir.Context()
        torch_d.register_dialect(_THREAD.context)
        uses = 0
    _THREAD.uses = uses + 1
    return _THREAD.context


def _scheduled(code: KernelCode, schedule: Schedule, use):
    """use(the kernel's module after stage 07-loops under `schedule`), in this thread's describing
    context (threads aside: a split kernel's chunk is the same code either way)."""
    with Diagnostics(_context()) as diagnostics:
        module = diagnostics.check(lambda: combine([code], diagnostics.context))
        module = diagnostics.check(lambda: with_vector_math(module))
        module = diagnostics.check(lambda: schedule_loops(module, schedule))
        return use(module)


def scheduled_text(code: KernelCode, schedule: Schedule) -> str:
    """The kernel's module after stage 07-loops under `schedule`, as text."""
    return _scheduled(code, schedule, str)


def candidate_features(code: KernelCode, candidate, kernel=None, cache: dict | None = None) -> dict:
    """The cost model's features of the kernel `code` under `candidate` (ATEN or a Schedule).
    `kernel`: its fastc.costmodel.KernelFeatures at the problem; `cache` (per kernel) keeps the
    module features per loop schedule, shared by the one- and many-thread and vectorizing
    variants."""
    schedule = SERIAL if candidate == ATEN else candidate
    loops = dataclasses.replace(schedule, parallel=False, vectorize=False)
    described = cache.get(loops) if cache is not None else None
    if described is None:
        described = _scheduled(code, loops, module_features)
        if cache is not None:
            cache[loops] = described
    return features_of(described, schedule=None if candidate == ATEN else schedule, kernel=kernel,
                       is_aten=candidate == ATEN)
