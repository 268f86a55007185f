"""The native CPU back end as one list of stages, from a planned kernel to machine code.

Triton's backends fill one ordered dict of stages (`stages["ttir"] = ...`, then ttgir, llir,
ptx, cubin); this file is that list for the cpu target. Each stage is a named function from one
form to the next, run in the order written here. With a debug dir (the `debug_dir` option) each
stage's output is written as it is made, numbered in order (stage_dump.py):

    <debug_dir>/graph_000_inference/cpu/k0_reduction.00-fx.fx
    <debug_dir>/graph_000_inference/cpu/k0_reduction.03-linalg.mlir
    <debug_dir>/graph_000_inference/cpu/k0_reduction.08-llvm.serial.mlir   (a build of k0 alone)
    <debug_dir>/graph_000_inference/cpu/graph.08-llvm.serial.mlir          (a build of several)

Per kernel (`kernel_stages`), once per distinct kernel of a graph (build.py: kernels with the
same code, a model's repeated layers, share one; a kernel split by rows, split.py, as its chunk
kernel, dumped as `k0_reduction.rows.NN-*`):

    00-fx           planned kernel   -> FX graph of its ops, an example value on every node;
                                        over 1-D tensors when the kernel runs flat (elementwise
                                        ops over contiguous tensors of one shape: subgraph.py)
    01-legal-fx     FX graph         -> FX graph that torch-mlir imports as eager computes it:
                                        ops the op table refuses (codegen/refusals.py), then
                                        the graph passes of LEGALIZE
    02-torch        FX graph         -> torch dialect (torch-mlir's FX importer)
    03-linalg       torch dialect    -> linalg on tensors (TORCH_TO_LINALG)
    04-fixed        linalg           -> NaN-propagating max/min (nan.py), `reassoc` on the op that
                                        accumulates a reduction, nothing else (reassociation.py)

Per build (`build_stages`): all kernels of a graph under one schedule, built together up front
so LLVM runs once per graph; or one kernel under another schedule, when first asked for:

    05-combined     kernels' bodies and entry functions (entry.py) -> one module (combine.py)
    06-vector-math  module           -> f32 exp/erf/tanh as calls to vectorizable helpers
                                        (fast_math.py)
    07-loops        module           -> the schedule's loop transformations (tiling.py: tile-and-
                                        fuse of each root, unroll, linalg vectorization, with the
                                        transform dialect); unchanged under a schedule without them
    08-llvm         module           -> LLVM dialect (`lowering_pipeline`), plus the entry points
                                        of kernels split by rows (gomp.py); cached on disk under
                                        the text of 06, those entry points and the pipeline
                                        (module_cache.py)
    09-jit          LLVM dialect     -> machine code in an ExecutionEngine (runtime.py); dumped as
                                        an object file

A stage that cannot handle a kernel raises Unsupported and the kernel runs as ATen; a build that
fails raises NativeBuildError with MLIR's and LLVM's own words (build.py then builds the kernels
one by one to find the culprit).
"""
from __future__ import annotations

import logging
import time

from fastc.passes import PassContext, SpellOutTanhGelu, SplitSqueezeDims

from ..refusals import refuse_by_table
from ..schedule import Schedule
from . import gomp, module_cache, runtime
from .combine import KernelCode, combine
from .fast_math import use_vector_math
from .nan import propagate_nan
from .reassociation import relax_float_math
from .stage_dump import NO_DUMP, StageDump, schedule_label
from .subgraph import kernel_graph
from .tiling import schedule_loops
from .torch_import import import_fx, lower_to_linalg

log = logging.getLogger("fastc")


# -- the stages of one kernel ---------------------------------------------------------------------

def kernel_stages(context, body: str) -> dict:
    """Stages 00-04 of one kernel, its function named `body`, its MLIR in `context`."""
    stages = {}
    stages["fx"] = kernel_graph
    stages["legal-fx"] = legalize
    stages["torch"] = lambda gm: import_fx(gm, body, context)
    stages["linalg"] = lambda module: lower_to_linalg(module, TORCH_TO_LINALG)
    stages["fixed"] = lambda module: fix_up(module, context)
    return stages


# Graph passes (fastc.passes, each with its lit file) that rewrite ops torch-mlir would lower
# unlike eager, or not at all, into ATen ops it lowers as eager computes them.
LEGALIZE = [
    SpellOutTanhGelu(),   # torch-mlir rounds sqrt(2/pi) to 0.797724 in the tanh GELU
    SplitSqueezeDims(),   # torch-mlir has no lowering for squeeze.dims
]

# torch-mlir's FX import path (torch_mlir.fx.export_and_import), then its lowering to linalg.
TORCH_TO_LINALG = [
    "builtin.module(func.func(torch-match-quantized-custom-ops), "
    "torchdynamo-export-to-torch-backend-pipeline{ extra-library=})",
    "builtin.module(torch-backend-to-linalg-on-tensors-backend-pipeline{allow-non-finites=True})",
]


def legalize(gm):
    """Stage 01-legal-fx: refuses the ops the op table says the cpu target does not lower (float
    argmax/argmin: torch-mlir ignores NaN), then runs the legalisation passes on the kernel's graph."""
    refuse_by_table(gm.graph.nodes, "cpu")
    ctx = PassContext(target="cpu")
    for p in LEGALIZE:
        p.run(gm, ctx)
    gm.graph.lint()
    gm.recompile()
    return gm


def fix_up(module, context):
    """Stage 04-fixed: rewrites of torch-mlir's linalg, on the IR."""
    propagate_nan(module)
    relax_float_math(module, context)
    return module


# -- the stages of one build ----------------------------------------------------------------------

def build_stages(schedule: Schedule, threads: int, context, libs: list[str], kernels=()) -> dict:
    """Stages 05-08 of one build under `schedule`, its MLIR in `context`. Kernels split by rows
    (`KernelCode.trampoline`) get their entry points added to the lowered module."""
    stages = {}
    stages["combined"] = lambda kernels: combine(kernels, context)
    stages["vector-math"] = with_vector_math
    stages["loops"] = lambda module: schedule_loops(module, schedule)
    stages["llvm"] = lambda module: with_trampolines(run_passes(module, lowering_pipeline(schedule, threads)),
                                                     trampolines(kernels))
    stages["jit"] = lambda module: runtime.execution_engine(module, libs)
    return stages


def trampolines(kernels) -> str:
    """The LLVM-dialect entry points of the kernels split by rows (gomp.py), with the OpenMP
    runtime's declarations once; "" when none is split."""
    texts = [k.trampoline for k in kernels if k.trampoline]
    return gomp.DECLARATIONS + "".join(texts) if texts else ""


def with_trampolines(module, text: str):
    """`module` (LLVM dialect) with the functions of `text` parsed into it; declarations of
    what `module` defines (the chunk kernels' C interfaces, there for the parser) are dropped."""
    if text:
        from torch_mlir import ir
        defined = {ir.StringAttr(op.attributes["sym_name"]).value for op in module.body.operations
                   if "sym_name" in op.attributes}
        parsed = ir.Module.parse("module {\n" + text + "}\n", module.context)
        for op in list(parsed.body.operations):
            if ir.StringAttr(op.attributes["sym_name"]).value in defined:
                continue
            op.detach_from_parent()
            module.body.append(op)
    return module


def with_vector_math(module):
    """Stage 06-vector-math (fast_math.py), on the IR."""
    use_vector_math(module)
    return module


def lowering_pipeline(schedule: Schedule, threads: int) -> list[str]:
    """Stage 07-llvm: MLIR passes from linalg on tensors (entry functions in destination-passing
    style) to the LLVM dialect, read top to bottom. Every schedule lowers the same way: threads
    come from splitting a kernel by rows (split.py), not from the loops (so no OpenMP dialect and
    no second OpenMP runtime next to torch's)."""
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
        # A tiled schedule's per-tile temporaries (tiling.py): allocated once, before the tile
        # loops, and on the stack when small, rather than a malloc per tile.
        *(TILE_BUFFERS if schedule.loops else []),
        # A kernel that only copies (a clone, a contiguous of a transpose) bufferizes to
        # memref.copy, which lowers to a runtime call for strided layouts: torch-mlir's pass
        # makes it a linalg.generic copy, which becomes a loop nest below.
        "func.func(refback-munge-memref-copy)",
        "buffer-deallocation-pipeline",
        # Loops: parallel dimensions become scf.parallel, reductions scf.for.
        "func.func(convert-linalg-to-parallel-loops)",
        "canonicalize",
        # Vector ops of a vectorizing schedule (tiling.py) become loops of LLVM vectors.
        *(VECTOR_LOWERING if schedule.vectorize else []),
        # LLVM: LLVM's own optimizer (O3, host CPU) then vectorizes the inner loops.
        "lower-affine",
        "convert-scf-to-cf",
        "expand-strided-metadata",
        # Tile loops index subviews: their offsets become affine maps only here.
        *(["lower-affine"] if schedule.loops else []),
        *(["convert-vector-to-llvm", "convert-ub-to-llvm"] if schedule.vectorize else []),
        "finalize-memref-to-llvm",
        "convert-math-to-llvm",
        "convert-math-to-libm",
        "convert-arith-to-llvm",
        "convert-cf-to-llvm",
        "convert-func-to-llvm",
        "convert-index-to-llvm",
        "reconcile-unrealized-casts",
    ]


TILE_BUFFERS = [
    "func.func(buffer-hoisting, buffer-loop-hoisting)",
    "func.func(promote-buffers-to-stack{max-alloc-size-in-bytes=65536})",
]

VECTOR_LOWERING = [
    "func.func(convert-vector-to-scf{full-unroll=true}, canonicalize)",
]


def pipeline_text(steps: list[str]) -> str:
    return "builtin.module(" + ", ".join(steps) + ")"


def run_passes(module, steps: list[str]):
    """`module` with the MLIR passes `steps` run on it (in place)."""
    from torch_mlir import passmanager
    with module.context:
        passmanager.PassManager.parse(pipeline_text(steps)).run(module.operation)
    return module


# -- running the stages ---------------------------------------------------------------------------

def run_kernel_stages(kernel, body: str, context, dump: StageDump = NO_DUMP):
    """The fixed-up linalg module of `kernel` (stage 04's output), each stage dumped."""
    value = kernel
    for number, (name, stage) in enumerate(kernel_stages(context, body).items()):
        value = stage(value)
        # A graph's note ("runs flat: ...", subgraph.kernel_graph) heads its dump.
        dump.write(kernel.name, number, name, value, note=getattr(value, "meta", {}).get("note"))
    return value


FIRST_BUILD_STAGE = len(kernel_stages(context=None, body=""))   # build stages are numbered after them

_ENGINES: list = []   # compiled engines live as long as the process (entry points point into them)


def run_build_stages(kernels: list[KernelCode], schedule: Schedule, dump: StageDump = NO_DUMP) -> dict:
    """{kernel name: entry point} for `kernels` built together under `schedule` (and, for a kernel
    split by rows, {parallel_key(name): its parallel entry point}).

    The lowered module comes from the disk cache when a verified entry is there; otherwise, or
    when a cached module fails to build, stage 07 runs, and the entry is (re)written once the
    module has built. MLIR's and LLVM's diagnostics never reach stderr: they become the message
    of the exception (a kernel's reason to run as ATen)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    threads = runtime.threads()
    libs: list[str] = []   # torch's OpenMP runtime, for split kernels, is registered by address
    names = [k.name for k in kernels]
    label = names[0] if len(names) == 1 else "graph"
    started = time.perf_counter()

    with runtime.Diagnostics() as diagnostics:
        torch_d.register_dialect(diagnostics.context)
        stages = build_stages(schedule, threads, diagnostics.context, libs, kernels)
        check = diagnostics.check

        def dumped(name: str, value, note: str | None = None):
            number = FIRST_BUILD_STAGE + list(stages).index(name)
            dump.write(label, number, name, value, schedule_label(schedule), note)
            return value
        module = dumped("combined", check(lambda: stages["combined"](kernels)))
        module = dumped("vector-math", check(lambda: stages["vector-math"](module)))
        module = dumped("loops", check(lambda: stages["loops"](module)))
        key = module_cache.cache_key(str(module) + trampolines(kernels),
                                     pipeline_text(lowering_pipeline(schedule, threads)))
        cached = module_cache.load(key)
        if cached is not None:
            try:
                lowered = dumped("llvm", check(lambda: ir.Module.parse(cached, diagnostics.context)),
                                 note=f"from the disk cache: {module_cache.entry_path(key)}")
                entries = _entry_points(dumped("jit", check(lambda: stages["jit"](lowered))), kernels, check)
                log.debug("fastc: loaded %d native kernels (%s) from the cache in %.2f s", len(names), schedule,
                          time.perf_counter() - started)
                return entries
            except Exception as e:  # noqa: BLE001 - a damaged entry is rebuilt, never a failure
                module_cache.STATS["cpu_disk_corrupt"] += 1
                log.warning("fastc: rebuilding cache entry %s: it does not build (%s)",
                            module_cache.entry_path(key), short(e))
        lowered = dumped("llvm", check(lambda: stages["llvm"](module)))
        text = str(lowered)
        entries = _entry_points(dumped("jit", check(lambda: stages["jit"](lowered))), kernels, check)
    module_cache.store(key, text)
    log.debug("fastc: compiled %d native kernels (%s) in %.2f s", len(names), schedule, time.perf_counter() - started)
    return entries


def parallel_key(name: str) -> str:
    """The key of a split kernel's parallel entry point in run_build_stages' answer."""
    return name + " parallel"


def _entry_points(engine, kernels: list[KernelCode], check) -> dict:
    def lookup():
        entries = {k.name: runtime.entry_point(engine, k.name, k.symbol) for k in kernels}
        entries.update({parallel_key(k.name): runtime.entry_point(engine, k.name, k.parallel_symbol)
                        for k in kernels if k.parallel_symbol})
        return entries
    entries = check(lookup)
    _ENGINES.append(engine)
    return entries


def short(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:400]}"
