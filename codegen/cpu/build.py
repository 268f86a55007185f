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
import threading

import sympy
import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures, default_choices, kernel_features
from fastc.ir import node_type

from ..errors import Unsupported
from ..schedule import Schedule
from . import gomp, runtime
from .combine import KernelCode
from .entry import entry_function
from .native_kernel import NativeKernel
from .params import describe, product
from .split import RowSplit, row_split
from .stage_dump import StageDump
from .stages import parallel_key, run_build_stages, run_kernel_stages, short
from .subgraph import example_value, size_expr

log = logging.getLogger("fastc")

SERIAL = Schedule(XBLOCK=0, parallel=False)
PARALLEL = Schedule(XBLOCK=0, parallel=True)


def compile_kernels(kernels, schedules=(SERIAL,), choices=None, debug_dir: str | None = None) -> tuple[dict, list]:
    """({kernel id: NativeKernel}, [(kernel name, reason it runs as ATen)]) for `kernels`
    (fastc.ir.kernel_plan.Kernel), compiled for each of `schedules`: one LLVM run per graph and
    schedule up front; other schedules are compiled when first asked for.

    A kernel computed row by row (split.py) is compiled as its chunk kernel, for 1/chunks of its
    rows, with two entry points in the same build (gomp.py): the serial one runs the chunks one
    after the other, the parallel one (Schedule(parallel=True)) runs them on torch's OpenMP
    threads. Both run the same machine code on every row, so they give the same bits. The parallel
    entry is offered to the chooser up front (NativeKernel.entries) where `choices` (default: the
    process-wide one) builds the parallel schedule up front; a kernel that does not split runs its
    serial code under the parallel schedule. With `debug_dir`, every stage's output is written
    there (stages.py)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    threads = runtime.threads() if gomp.library() is not None else 1
    context = ir.Context()
    torch_d.register_dialect(context)
    dump = StageDump(debug_dir)
    made, failed, sources = {}, [], {}
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
            source = KernelSource(k, d, threads, context, dump)
            code = source.code()
        except Unsupported as e:
            failed.append((k.name, e.reason))
            continue
        sources[k.id] = source
        numel = max((product(shape) for shape in d["shapes"]),
                    key=lambda v: 0 if isinstance(v, sympy.Basic) else v, default=1)
        needs = sorted({s.name for shape in d["shapes"] + [x for x in d["strides"] if x]
                        for e in shape if isinstance(e, sympy.Basic) for s in e.free_symbols})
        made[k.id] = NativeKernel(k.name, k.kind, d["params"], d["out_params"], d["shapes"], d["strides"],
                                  d["dtypes"], numel, needs, compiler=_on_demand(source, dump),
                                  dynamic_inputs=d["dynamic_inputs"], input_sizes=_input_sizes(k, needs))
        made[k.id].source = code.source
        made[k.id].split = source
    choices = choices if choices is not None else default_choices()
    by_id = {k.id: k for k in kernels}
    for schedule in dict.fromkeys(SERIAL if s.parallel else s for s in schedules):  # parallel: with serial
        for kid, fn in _compile_group({kid: sources[kid] for kid in made}, schedule, failed, dump).items():
            made[kid].entries[schedule] = fn
            parallel = sources[kid].parallel
            if parallel is not None and choices.build_up_front(_features(by_id[kid], made[kid]), PARALLEL):
                made[kid].entries[PARALLEL] = parallel   # a candidate for the chooser from the start
    for kid in [kid for kid, nk in made.items() if not nk.entries]:
        del made[kid]
    for source in sources.values():
        source.release()
    reasons = dict(failed)
    for k, first in twins:
        if first.id in made:  # shares the compiled code (and schedules built later)
            made[k.id] = dataclasses.replace(made[first.id], name=k.name, input_sizes=_input_sizes(
                k, made[first.id].needs_symbols))
            made[k.id].source = made[first.id].source
            made[k.id].split = made[first.id].split
        else:
            failed.append((k.name, reasons.get(first.name, "as " + first.name)))
    return made, failed


class KernelSource:
    """A kernel's code as builds take it (combine.KernelCode): split by rows when it is computed
    row by row and threads are there (its chunk kernel, with the entry points of gomp.py), else
    whole. Made once, whichever threads ask; `parallel` is the parallel entry point once a build
    made one, `text()` says how the parallel schedule runs the kernel."""

    def __init__(self, kernel, described: dict, threads: int, context, dump: StageDump):
        self.kernel, self.described, self.threads, self.context, self.dump = kernel, described, threads, context, dump
        self.split: RowSplit | None = None
        self.reason = "not decided"
        self.parallel = None
        self.parallel_entries: dict = {}   # serial schedule -> the parallel entry of its build
        self.scheduled: dict = {}          # loop schedule -> its module features at stage 07-loops (candidate_mlir.py)
        self._split_code = self._whole_code = None
        self._lock = threading.RLock()

    def code(self) -> KernelCode:
        """The split code when the kernel splits and its chunk kernel lowers, else the whole."""
        with self._lock:
            if self._split_code is None and self.reason == "not decided":
                self._split_code = self._try_split()
            return self._split_code or self.whole()

    def whole(self) -> KernelCode:
        """The kernel's own code (Unsupported when a stage cannot handle it)."""
        with self._lock:
            if self._whole_code is None:
                self._whole_code = _whole_code(self.kernel, self.described, self.context, self.dump)
            return self._whole_code

    def give_up_split(self, why: str) -> None:
        """The split code failed to build: the kernel runs whole (serial) from now on."""
        with self._lock:
            self.split, self._split_code, self.reason = None, None, why

    def release(self) -> None:
        """Drops what only compile_kernels needs (the graph's nodes, the MLIR context of its
        kernels): the code made is kept for builds on demand."""
        with self._lock:
            self.kernel = self.described = self.context = None
            if self.split is not None:
                self.split.kernel = None

    def text(self) -> str:
        """How the parallel schedule runs this kernel, for reports and tests."""
        return self.split.text() if self.split is not None else f"not split: {self.reason}"

    def _try_split(self) -> KernelCode | None:
        if self.threads < 2:
            self.reason = ("one thread" if gomp.library() is not None
                           else "no OpenMP runtime of torch's to run threads on")
            return None
        found = row_split(self.kernel, self.threads)
        if isinstance(found, str):
            self.reason = found
            return None
        try:
            code = _split_code(self.kernel, self.described, found, self.dump)
        except Unsupported as e:
            self.reason = f"its chunk kernel: {e.reason}"
            return None
        except Exception as e:  # noqa: BLE001 - the whole kernel serves
            self.reason = f"its chunk kernel: {short(e)}"
            return None
        self.split, self.reason = found, ""
        return code


def _whole_code(k, d: dict, context, dump: StageDump) -> KernelCode:
    body = f"k{k.id}_body"
    module = run_kernel_stages(k, body, context, dump)
    func = _only_func(module)
    entry = entry_function(k.name, body, func.type, d["params"], d["out_params"])
    text = module.operation.get_asm(use_local_scope=True)
    if "{-#" in text:
        raise Unsupported("torch-mlir emitted resource constants")
    return KernelCode(k.name, text, entry)


def _split_code(k, full: dict, split: RowSplit, dump: StageDump) -> KernelCode:
    """The chunk kernel of `split` with its serial and parallel entry points (gomp.trampoline)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    chunk = split.kernel
    context = ir.Context()   # its own: an on-demand build may come from another thread
    torch_d.register_dialect(context)
    body = f"k{k.id}_rows_body"
    module = run_kernel_stages(chunk, body, context, dump)
    func = _only_func(module)
    d = describe(chunk)
    for p, q in zip(full["params"] + full["out_params"], d["params"] + d["out_params"]):
        if _layout_key(p) != _layout_key(q):
            raise Unsupported(f"a chunk's layout {q} differs from the kernel's {p}")
    name = f"{k.name}_rows"
    entry = entry_function(name, body, func.type, d["params"], d["out_params"])
    text = module.operation.get_asm(use_local_scope=True)
    if "{-#" in text:
        raise Unsupported("torch-mlir emitted resource constants")
    args = []
    values = list(k.inputs) + list(k.outputs)
    rows = list(split.input_rows) + list(split.output_rows)
    for i, (p, q, n, r) in enumerate(zip(full["params"] + full["out_params"], d["params"] + d["out_params"],
                                         values, rows)):
        if p.kind != "tensor":
            args.append(("scalar", str(func.type.inputs[i])))
            continue
        if r is not None and getattr(q, "flat", False):   # passed as 1-D of its numel elements
            r = product(q.shape) if getattr(q, "shape", None) else None
            if r is None:
                raise Unsupported("a flat chunk without a static size")
        args.append(("tensor", q.rank, r, example_value(n).element_size()))
    trampoline = gomp.trampoline(k.name, f"_mlir_ciface_{name}", args, split.chunks)
    source = f"// {k.name}: {split.text()}; the chunk kernel:\n" + text
    return KernelCode(k.name, source, entry, trampoline=trampoline, symbol=gomp.serial_symbol(k.name),
                      parallel_symbol=gomp.entry_symbol(k.name))


def _layout_key(p) -> tuple:
    """What of a Param the caller's descriptor depends on, but for its sizes."""
    return (p.kind, p.rank, p.contiguous, p.strides, getattr(p, "flat", False))


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


def _compile_group(sources: dict, schedule: Schedule, failed: list, dump: StageDump) -> dict:
    """{kernel id: entry point} for the code of all `sources` (KernelSource) built together under
    `schedule` (a split kernel's parallel entry goes to its source's `parallel`); on a failure,
    kernel by kernel, and a split kernel that fails alone is built whole."""
    if not sources:
        return {}
    codes = {kid: src.code() for kid, src in sources.items()}
    try:
        entries = run_build_stages(list(codes.values()), schedule, dump)
    except Exception as e:  # noqa: BLE001 - isolate the kernel that breaks the module
        if len(codes) == 1:
            ((kid, src),) = sources.items()
            if src.split is None:
                failed.append((codes[kid].name, f"MLIR/LLVM compilation failed: {short(e)}"))
                return {}
            log.debug("fastc: %s does not build split by rows (%s); built whole", codes[kid].name, short(e))
            src.give_up_split(f"its chunk kernel does not build: {short(e)}")
            try:
                src.whole()
            except Unsupported as why:
                failed.append((codes[kid].name, why.reason))
                return {}
            return _compile_group(sources, schedule, failed, dump)
    else:
        for kid, code in codes.items():
            if code.parallel_symbol is not None:
                sources[kid].parallel = entries[parallel_key(code.name)]
                sources[kid].parallel_entries[schedule] = sources[kid].parallel
        return {kid: entries[code.name] for kid, code in codes.items()}
    out = {}
    for kid, src in sources.items():
        out.update(_compile_group({kid: src}, schedule, failed, dump))
    return out


def _on_demand(source: KernelSource, dump: StageDump):
    """What builds a kernel under a schedule first asked for after compile_kernels (NativeKernel.entry).
    A parallel schedule is the split kernel's parallel entry, made with the serial build of the
    same loops; a kernel that does not split runs its serial code under it. A schedule whose loop
    transformations (tiling.py) do not build for this kernel raises: it is not a legal candidate
    here, and measuring it must not time another schedule's code."""
    def compile_for(kernel, schedule):
        if schedule.parallel:
            serial_schedule = dataclasses.replace(schedule, parallel=False)
            serial = kernel.entry(serial_schedule)
            parallel = source.parallel_entries.get(serial_schedule)
            if parallel is None:
                log.debug("fastc: %s runs on one thread: %s", kernel.name, source.reason)
                return serial
            return parallel
        code = source.code()
        try:
            entries = run_build_stages([code], schedule, dump)
            if code.parallel_symbol is not None:
                source.parallel_entries[schedule] = entries[parallel_key(code.name)]
                if source.parallel is None and not schedule.loops:
                    source.parallel = entries[parallel_key(code.name)]
            return entries[code.name]
        except Exception as e:  # noqa: BLE001 - another schedule's build computes the same values
            fallback = kernel.entries.get(SERIAL) or next(iter(kernel.entries.values()), None)
            if fallback is None or schedule.loops:
                raise
            log.warning("fastc: native kernel %s does not build under %s (%s); it runs the code built "
                        "for another schedule", code.name, schedule, short(e))
            return fallback
    return compile_for
