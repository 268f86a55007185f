"""Compiling a graph's kernels to native code: which kernels are built, together or alone, and
under which schedules; the stages themselves are listed in stages.py.

All kernels of a graph go into one MLIR module per schedule, so LLVM runs once per graph, not
once per kernel. Kernels with the same code (a model's repeated layers) are compiled once and
share it. A kernel that a stage cannot handle raises Unsupported and runs as ATen; if the
combined module fails to build, kernels are built one by one to find the culprit.
"""
from __future__ import annotations

import dataclasses
import logging

import sympy
import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures, default_choices, kernel_features
from fastc.ir import node_type

from ..errors import Unsupported
from ..schedule import Schedule
from . import runtime
from .combine import KernelCode
from .entry import entry_function
from .native_kernel import NativeKernel
from .params import describe, product
from .stage_dump import StageDump
from .stages import run_build_stages, run_kernel_stages, short
from .subgraph import example_value, size_expr

log = logging.getLogger("fastc")

SERIAL = Schedule(XBLOCK=0, parallel=False)
PARALLEL = Schedule(XBLOCK=0, parallel=True)


def compile_kernels(kernels, schedules=(SERIAL,), choices=None, debug_dir: str | None = None) -> tuple[dict, list]:
    """({kernel id: NativeKernel}, [(kernel name, reason it runs as ATen)]) for `kernels`
    (fastc.ir.kernel_plan.Kernel), compiled for each of `schedules` (parallel ones only when an
    OpenMP runtime is found). Other schedules are compiled when first asked for (a kernel the
    heuristic sends to threads, or max-autotune's candidates): one LLVM run per graph up front.
    Which of `schedules` a kernel is built for up front is `choices`' call (default: the
    process-wide one). With `debug_dir`, every stage's output is written there (stages.py)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    if runtime.openmp_library() is None:
        schedules = [s for s in schedules if not s.parallel]
    context = ir.Context()
    torch_d.register_dialect(context)
    dump = StageDump(debug_dir)
    made, failed, codes = {}, [], {}
    first_of: dict[str, object] = {}   # kernel signature -> the kernel compiled for it
    twins: list[tuple] = []             # (kernel, the earlier kernel with its signature)
    for k in kernels:
        try:
            d = describe(k)
            signature = _signature(k, d)
            if signature in first_of:  # the same code as an earlier kernel (say, the next layer)
                twins.append((k, first_of[signature]))
                continue
            first_of[signature] = k
            body = f"k{k.id}_body"
            module = run_kernel_stages(k, body, context, dump)
            func = _only_func(module)
            entry = entry_function(k.name, body, func.type, d["params"], d["out_params"])
        except Unsupported as e:
            failed.append((k.name, e.reason))
            continue
        text = module.operation.get_asm(use_local_scope=True)
        if "{-#" in text:
            failed.append((k.name, "torch-mlir emitted resource constants"))
            continue
        codes[k.id] = KernelCode(k.name, text, entry)
        numel = max((product(shape) for shape in d["shapes"]),
                    key=lambda v: 0 if isinstance(v, sympy.Basic) else v, default=1)
        needs = sorted({s.name for shape in d["shapes"] + [x for x in d["strides"] if x]
                        for e in shape if isinstance(e, sympy.Basic) for s in e.free_symbols})
        made[k.id] = NativeKernel(k.name, k.kind, d["params"], d["out_params"], d["shapes"], d["strides"],
                                  d["dtypes"], numel, needs, compiler=_on_demand(codes[k.id], dump),
                                  dynamic_inputs=d["dynamic_inputs"], input_sizes=_input_sizes(k, needs))
        made[k.id].source = codes[k.id].source
    choices = choices if choices is not None else default_choices()
    by_id = {k.id: k for k in kernels}
    for schedule in schedules:
        group = {kid: code for kid, code in codes.items()
                 if not schedule.parallel or choices.build_up_front(_features(by_id[kid], made[kid]), schedule)}
        for kid, fn in _compile_group(group, schedule, failed, dump).items():
            made[kid].entries[schedule] = fn
    for kid in [kid for kid, nk in made.items() if not nk.entries]:
        del made[kid]
    reasons = dict(failed)
    for k, first in twins:
        if first.id in made:  # shares the compiled code (and schedules built later)
            made[k.id] = dataclasses.replace(made[first.id], name=k.name, input_sizes=_input_sizes(
                k, made[first.id].needs_symbols))
            made[k.id].source = made[first.id].source
        else:
            failed.append((k.name, reasons.get(first.name, "as " + first.name)))
    return made, failed


def _signature(kernel, described: dict) -> str:
    """What a kernel's code depends on, with its values numbered by position: kernels with the
    same signature (a transformer's layers) share one compiled function."""
    number = {n: f"in{i}" for i, n in enumerate(kernel.inputs)}
    number.update({n: f"v{i}" for i, n in enumerate(kernel.nodes)})
    lines = [f"{number[n]}: {node_type(n)}" for n in kernel.inputs]
    for n in kernel.nodes:
        args = fx.node.map_arg((n.args, n.kwargs), lambda a: number[a])
        lines.append(f"{number[n]}: {node_type(n)} = {n.target}{args!r}")
    lines.append("out " + ", ".join(number[n] for n in kernel.outputs))
    lines.append(repr({k: v for k, v in described.items() if k != "dtypes"}) + repr(described["dtypes"]))
    return "\n".join(lines)


def _input_sizes(kernel, needs: list[str]) -> dict:
    """{symbol: (input index, dim)} for the symbols in `needs` that an input's size is."""
    found = {}
    for i, n in enumerate(kernel.inputs):
        val = example_value(n)
        if isinstance(val, torch.Tensor):
            for d, size in enumerate(val.shape):
                e = size_expr(size)
                if isinstance(e, sympy.Symbol) and e.name in needs:
                    found.setdefault(e.name, (i, d))
    return found


def _features(kernel, native: NativeKernel) -> KernelFeatures:
    """What the choices object is told about a kernel before any call (sizes None: dynamic)."""
    sizes = None if isinstance(native.numel, sympy.Basic) else {"xnumel": int(native.numel)}
    return kernel_features(kernel, "cpu", sizes)


def _only_func(module):
    funcs = [op for op in module.body.operations if op.operation.name == "func.func"]
    if len(funcs) != 1:
        raise Unsupported(f"torch-mlir produced {len(funcs)} functions")
    return funcs[0]


def _compile_group(codes: dict, schedule: Schedule, failed: list, dump: StageDump) -> dict:
    """{kernel id: entry point} for all `codes` built together under `schedule`; on a failure,
    kernel by kernel."""
    if not codes:
        return {}
    try:
        entries = run_build_stages(list(codes.values()), schedule, dump)
        return {kid: entries[code.name] for kid, code in codes.items()}
    except Exception as e:  # noqa: BLE001 - isolate the kernel that breaks the module
        if len(codes) == 1:
            (code,) = codes.values()
            if schedule.parallel:  # the serial build serves it (see _on_demand)
                log.debug("fastc: no parallel build of %s: %s", code.name, short(e))
            else:
                failed.append((code.name, f"MLIR/LLVM compilation failed: {short(e)}"))
            return {}
    out = {}
    for kid, code in codes.items():
        out.update(_compile_group({kid: code}, schedule, failed, dump))
    return out


def _on_demand(code: KernelCode, dump: StageDump):
    """What builds `code` under a schedule first asked for after compile_kernels (NativeKernel.entry)."""
    def compile_for(kernel, schedule):
        if schedule.parallel and runtime.openmp_library() is None:
            # No OpenMP runtime to link (FASTC_OPENMP_LIB=""): a parallel schedule runs on one thread.
            if SERIAL in kernel.entries:
                return kernel.entries[SERIAL]
            schedule = SERIAL
        try:
            return run_build_stages([code], schedule, dump)[code.name]
        except Exception as e:  # noqa: BLE001 - another schedule's build computes the same values
            fallback = kernel.entries.get(SERIAL) or next(iter(kernel.entries.values()), None)
            if fallback is None:
                raise
            log.warning("fastc: native kernel %s does not build under %s (%s); it runs the code built "
                        "for another schedule", code.name, schedule, short(e))
            return fallback
    return compile_for
