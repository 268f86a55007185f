"""Compiling a graph's kernels to native code, and `NativeKernel`, what runs one of them.

All kernels of a graph go into one MLIR module per schedule, so LLVM runs once per graph, not
once per kernel. A kernel torch-mlir cannot lower raises Unsupported and runs as ATen; if the
combined module fails to compile, kernels are compiled one by one to find the culprit.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import threading
import time
from dataclasses import dataclass, field

import sympy
import torch
import torch.fx as fx

from fastc.costmodel import KernelFeatures, default_choices, kernel_features
from fastc.ir import TensorType, node_type
from fastc.ir.types import ScalarType

from ..cache import STATS, _atomic_write, cache_dir, sha256, versions
from ..errors import Unsupported
from ..schedule import Schedule
from . import runtime
from .fast_math import use_vector_math
from .linalg import ELEMENT_TYPES, Param, entry_function, import_kernel, relax_float_math
from .nan import propagate_nan
from .pipeline import pipeline_text, run_pipeline
from .subgraph import example_value, kernel_graph

log = logging.getLogger("fastc")

SERIAL = Schedule(XBLOCK=0, parallel=False)
PARALLEL = Schedule(XBLOCK=0, parallel=True)


@dataclass
class NativeKernel:
    """One planned kernel compiled for the CPU; `run` takes tensors and returns its outputs."""
    name: str
    kind: str
    params: list[Param]
    out_params: list[Param]
    out_shapes: list[tuple]          # per output: sizes (ints or sympy expressions)
    out_strides: list[tuple | None]  # per output: strides when not contiguous
    out_dtypes: list[torch.dtype]
    numel: object                    # elements of the largest output (int or sympy)
    needs_symbols: list[str]
    entries: dict = field(default_factory=dict)    # Schedule -> packed C entry point
    compiler: object = None                        # builds an entry for a schedule on demand
    dynamic_inputs: bool = False                   # some input size is a symbol (may be 0)
    # size symbol -> (input, dim) that carries it: data-dependent sizes (unbacked symbols, say
    # after a boolean mask) are not bound by the graph's inputs, but the kernel's inputs have them.
    input_sizes: dict = field(default_factory=dict)
    # Guards compiling entries on demand: a compiled model may be called from several threads at
    # once. Shared with the kernels made by dataclasses.replace (twins share `entries` too).
    build_lock: object = field(default_factory=threading.RLock, repr=False, compare=False)

    def __post_init__(self):
        layout = [("tensor", p.rank) if p.kind == "tensor" else (p.kind,) for p in self.params]
        layout += [("tensor", p.rank) for p in self.out_params]
        from .runtime import Arguments
        self.arguments = Arguments(layout)
        self._static = all(not isinstance(s, sympy.Basic) for shape in self.out_shapes for s in shape)
        self._shapes_at: dict = {}
        self._default = None

    @property
    def schedules(self) -> list[Schedule]:
        return list(self.entries)

    def problem_sizes(self, *inputs, symbols=None) -> dict[str, int]:
        if inputs:
            symbols = self._with_input_sizes(inputs, symbols)
        try:
            return {"xnumel": self._int(self.numel, symbols)}
        except ValueError as e:  # a data-dependent size, asked for without the inputs
            raise Unsupported(str(e)) from None

    def _with_input_sizes(self, inputs, symbols):
        missing = [(s, i, d) for s, (i, d) in self.input_sizes.items() if s not in (symbols or {})]
        if not missing:
            return symbols
        return {**(symbols or {}), **{s: int(inputs[i].shape[d]) for s, i, d in missing}}

    def run(self, *inputs, schedule: Schedule | None = None, symbols: dict | None = None) -> tuple:
        if self.dynamic_inputs and any(isinstance(x, torch.Tensor) and x.numel() == 0 for x in inputs):
            raise Unsupported(EMPTY)  # this call only: the caller runs the kernel's ATen ops
        if self.input_sizes:
            symbols = self._with_input_sizes(inputs, symbols)
        shapes = self._output_shapes(symbols)
        values = [_in_layout(p, x) if p.kind == "tensor" else x for p, x in zip(self.params, inputs)]
        outs = [torch.empty(shape, dtype=dtype) if strides is None else
                torch.empty_strided(shape, strides, dtype=dtype)
                for (shape, strides), dtype in zip(shapes, self.out_dtypes)]
        if schedule is None:
            schedule = self._default if self._static else None
            if schedule is None:
                schedule = self.default_schedule(self.problem_sizes(symbols=symbols))
                if self._static:
                    self._default = schedule
        self.arguments.call(self.entry(schedule), values + outs)
        return tuple(outs)

    def entry(self, schedule: Schedule):
        """The entry point for `schedule`, compiled on first use (once, whichever threads ask)."""
        fn = self.entries.get(schedule)
        if fn is None:
            with self.build_lock:
                fn = self.entries.get(schedule)
                if fn is None:
                    fn = self.compiler(self, schedule)
                    self.entries[schedule] = fn
        return fn

    def default_schedule(self, sizes: dict) -> Schedule:
        """The process-wide choices object's schedule at `sizes`, for a caller that names none."""
        return default_choices().schedule(KernelFeatures(self.name, self.kind, "cpu", sizes=sizes))

    def bound(self, schedule: Schedule | None = None):
        """A callable running this kernel under `schedule` with everything per-call precomputed,
        for a kernel whose sizes are all static; None otherwise (then call `run`)."""
        if not self._static or self.dynamic_inputs or self.input_sizes or self.needs_symbols:
            return None
        schedule = schedule or self.default_schedule(self.problem_sizes())
        fn = self.entry(schedule)
        outputs = [(shape, strides, dtype) for (shape, strides), dtype in zip(self._output_shapes(None), self.out_dtypes)]
        contiguous = [i for i, p in enumerate(self.params) if p.kind == "tensor" and p.contiguous]
        fixed = [(i, p.strides) for i, p in enumerate(self.params) if p.kind == "tensor" and p.strides is not None]
        call, empty, empty_strided = self.arguments.call, torch.empty, torch.empty_strided

        def run(*inputs):
            values = list(inputs)
            for i in contiguous:
                if not values[i].is_contiguous():
                    values[i] = values[i].contiguous()
            for i, strides in fixed:
                if values[i].stride() != strides:
                    values[i] = _restrided(values[i], strides)
            outs = tuple(empty(shape, dtype=dtype) if strides is None else empty_strided(shape, strides, dtype=dtype)
                         for shape, strides, dtype in outputs)
            call(fn, values + list(outs))
            return outs
        return run

    def _output_shapes(self, symbols):
        if self._static:
            key = None
        else:
            key = tuple(sorted((symbols or {}).items()))
        shapes = self._shapes_at.get(key)
        if shapes is None:
            # Computed whole, then published in one step: another thread sees it or does not.
            shapes = [(tuple(self._int(s, symbols) for s in shape),
                       None if strides is None else tuple(self._int(s, symbols) for s in strides))
                      for shape, strides in zip(self.out_shapes, self.out_strides)]
            if len(self._shapes_at) >= SHAPES_KEPT:
                self._shapes_at = {}  # many sizes (dynamic shapes): start over, not grow forever
            self._shapes_at[key] = shapes
        return shapes

    @staticmethod
    def _int(expr, symbols) -> int:
        if not isinstance(expr, sympy.Basic):
            return int(expr)
        missing = [s.name for s in expr.free_symbols if s.name not in (symbols or {})]
        if missing:
            raise ValueError(f"native kernel needs the value of size symbols {missing}")
        return int(expr.xreplace({s: sympy.Integer(symbols[s.name]) for s in expr.free_symbols}))


SHAPES_KEPT = 256   # output shapes remembered per kernel, by size symbols' values


def _product(shape):
    total = 1
    for size in shape:
        total = total * size
    return total


def _expr(v):
    return v.node.expr if isinstance(v, (torch.SymInt, torch.SymFloat)) else v


def _is_contiguous(shape, strides) -> bool:
    expected = 1
    for size, stride in reversed(list(zip(shape, strides))):
        if size != 1 and sympy.simplify(sympy.sympify(stride) - sympy.sympify(expected)) != 0:
            return False
        expected = expected * size
    return True


def _tensor_layout(node) -> tuple[tuple, tuple, bool]:
    val = example_value(node)
    if not isinstance(val, torch.Tensor):
        raise Unsupported(f"input {node.name} has no example tensor")
    shape = tuple(_expr(s) for s in val.shape)
    strides = tuple(_expr(s) for s in val.stride())
    return shape, strides, _is_contiguous(shape, strides)


def _in_layout(p: Param, x: torch.Tensor) -> torch.Tensor:
    """`x` in the layout the kernel was compiled for (a copy only when it arrives otherwise)."""
    if p.contiguous:
        return x if x.is_contiguous() else x.contiguous()
    if p.strides is not None and x.stride() != p.strides:
        return _restrided(x, p.strides)
    return x


def _restrided(x: torch.Tensor, strides: tuple) -> torch.Tensor:
    if any(st == 0 and size > 1 for st, size in zip(strides, x.shape)):
        # compiled for a broadcast (stride 0) input that now arrives as real data: this call runs as ATen
        raise Unsupported(f"input strides {x.stride()} where the kernel was compiled for {strides}")
    return torch.empty_strided(x.shape, strides, dtype=x.dtype).copy_(x)


def _static(strides, contiguous: bool) -> tuple | None:
    """The strides of a non-contiguous layout when all are known numbers (compiled in)."""
    if contiguous or any(isinstance(st, sympy.Basic) for st in strides):
        return None
    return tuple(int(st) for st in strides)


def _param(node) -> Param:
    t = node_type(node)
    if isinstance(t, TensorType):
        if t.dtype not in ELEMENT_TYPES:
            raise Unsupported(f"{node.name}: dtype {t.dtype} on the native CPU target")
        shape, strides, contiguous = _tensor_layout(node)
        return Param("tensor", len(shape), contiguous, _static(strides, contiguous))
    if isinstance(t, ScalarType) and t.kind in ("int", "float", "bool"):
        return Param(t.kind)
    raise Unsupported(f"input {node.name} of type {t}")


# Dtypes MLIR has a type for that the native target still refuses (such kernels run as ATen).
REFUSED_DTYPES = {
    torch.uint8: "torch-mlir lowers it as signed i8: wrong comparisons and division",
    torch.int8: "torch-mlir aborts the process converting a scalar to int8",
    torch.bfloat16: "LLVM's JIT has no __truncsfbf2 to round to bfloat16",
}


def _refuse_dtypes(kernel) -> None:
    for n in [*kernel.inputs, *kernel.nodes]:
        for v in torch.utils._pytree.tree_leaves(example_value(n)):
            if isinstance(v, torch.Tensor) and v.dtype in REFUSED_DTYPES:
                raise Unsupported(f"{n.name}: dtype {v.dtype} on the native CPU target "
                                  f"({REFUSED_DTYPES[v.dtype]})")


# Empty tensors run as ATen: there is nothing to compute, and torch-mlir's lowerings do not
# follow ATen's conventions for reductions over no elements (var/std of none is NaN in ATen,
# -0.0 from torch-mlir's division by N - correction = -1).
EMPTY = "empty tensors (no elements) run as ATen"


def _refuse_empty(kernel) -> bool:
    """Raises Unsupported for a kernel with a statically empty input or output; returns whether
    some input size is symbolic (then `NativeKernel.run` checks at each call)."""
    dynamic = False
    for n in [*kernel.inputs, *kernel.outputs]:
        val = example_value(n)
        if not isinstance(val, torch.Tensor):
            continue
        sizes = [_expr(s) for s in val.shape]
        if any(not isinstance(s, sympy.Basic) and s == 0 for s in sizes):
            raise Unsupported(f"{n.name}: {EMPTY}")
        dynamic = dynamic or (n in kernel.inputs and any(isinstance(s, sympy.Basic) for s in sizes))
    return dynamic


def describe(kernel) -> dict:
    """What the entry function of `kernel` takes and returns, from the graph's metadata."""
    _refuse_dtypes(kernel)
    dynamic_inputs = _refuse_empty(kernel)
    params = [_param(n) for n in kernel.inputs]
    out_params, shapes, strides, dtypes = [], [], [], []
    for n in kernel.outputs:
        t = node_type(n)
        if not isinstance(t, TensorType):
            raise Unsupported(f"output {n.name} of type {t} (only tensors)")
        if t.dtype not in ELEMENT_TYPES:
            raise Unsupported(f"{n.name}: dtype {t.dtype} on the native CPU target")
        shape, st, contiguous = _tensor_layout(n)
        out_params.append(Param("tensor", len(shape), contiguous, _static(st, contiguous)))
        shapes.append(shape)
        strides.append(None if contiguous else st)
        dtypes.append(t.dtype)
    return {"params": params, "out_params": out_params, "shapes": shapes, "strides": strides, "dtypes": dtypes,
            "dynamic_inputs": dynamic_inputs}


def compile_kernels(kernels, schedules=(SERIAL,), choices=None) -> tuple[dict, list]:
    """({kernel id: NativeKernel}, [(kernel name, reason it runs as ATen)]) for `kernels`
    (fastc.ir.kernel_plan.Kernel), compiled for each of `schedules` (parallel ones only when an
    OpenMP runtime is found). Other schedules are compiled when first asked for (a kernel the
    heuristic sends to threads, or max-autotune's candidates): one LLVM run per graph up front.
    Which of `schedules` a kernel is built for up front is `choices`' call (default: the
    process-wide one)."""
    from torch_mlir import ir
    from torch_mlir.dialects import torch as torch_d
    if runtime.openmp_library() is None:
        schedules = [s for s in schedules if not s.parallel]
    context = ir.Context()
    torch_d.register_dialect(context)
    made, failed, pieces = {}, [], {}
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
            module = import_kernel(kernel_graph(k), body, context)
            func = _only_func(module)
            entry = entry_function(k.name, body, func.type, d["params"], d["out_params"])
            propagate_nan(module)
            relax_float_math(module, context)
        except Unsupported as e:
            failed.append((k.name, e.reason))
            continue
        text = module.operation.get_asm(use_local_scope=True)
        if "{-#" in text:
            failed.append((k.name, "torch-mlir emitted resource constants"))
            continue
        pieces[k.id] = (text, entry)
        numel = max((_product(shape) for shape in d["shapes"]),
                    key=lambda v: 0 if isinstance(v, sympy.Basic) else v, default=1)
        needs = sorted({s.name for shape in d["shapes"] + [x for x in d["strides"] if x]
                        for e in shape if isinstance(e, sympy.Basic) for s in e.free_symbols})
        made[k.id] = NativeKernel(k.name, k.kind, d["params"], d["out_params"], d["shapes"], d["strides"],
                                  d["dtypes"], numel, needs, compiler=_on_demand(pieces[k.id], k.name),
                                  dynamic_inputs=d["dynamic_inputs"], input_sizes=_input_sizes(k, needs))
        made[k.id].source = text + "\n" + entry
    choices = choices if choices is not None else default_choices()
    by_id = {k.id: k for k in kernels}
    for schedule in schedules:
        group = {kid: p for kid, p in pieces.items()
                 if not schedule.parallel or choices.build_up_front(_features(by_id[kid], made[kid]), schedule)}
        for kid, fn in _compile_group(group, made, schedule, failed).items():
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
                e = _expr(size)
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


def _compile_group(pieces: dict, made: dict, schedule: Schedule, failed: list) -> dict:
    """Entry points for all `pieces` under `schedule`; on a failure, kernel by kernel."""
    names = {kid: made[kid].name for kid in pieces}
    if not pieces:
        return {}
    try:
        entries = _compile(list(pieces.values()), list(names.values()), schedule)
        return {kid: entries[name] for kid, name in names.items()}
    except Exception as e:  # noqa: BLE001 - isolate the kernel that breaks the module
        if len(pieces) == 1:
            kid = next(iter(pieces))
            if schedule.parallel:  # the serial build serves it (see _on_demand)
                log.debug("fastc: no parallel build of %s: %s", names[kid], _short(e))
            else:
                failed.append((names[kid], f"MLIR/LLVM compilation failed: {_short(e)}"))
            return {}
    out = {}
    for kid, piece in pieces.items():
        out.update(_compile_group({kid: piece}, made, schedule, failed))
    return out


def _short(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e)[:400]}"


def _on_demand(piece, name):
    def compile_for(kernel, schedule):
        if schedule.parallel and runtime.openmp_library() is None:
            # No OpenMP runtime to link (FASTC_OPENMP_LIB=""): a parallel schedule runs on one thread.
            if SERIAL in kernel.entries:
                return kernel.entries[SERIAL]
            schedule = SERIAL
        try:
            return _compile([piece], [name], schedule)[name]
        except Exception as e:  # noqa: BLE001 - another schedule's build computes the same values
            fallback = kernel.entries.get(SERIAL) or next(iter(kernel.entries.values()), None)
            if fallback is None:
                raise
            log.warning("fastc: native kernel %s does not build under %s (%s); it runs the code built "
                        "for another schedule", name, schedule, _short(e))
            return fallback
    return compile_for


_ENGINES: list = []   # compiled engines live as long as the process (entry points point into them)


def _compile(pieces: list, names: list[str], schedule: Schedule) -> dict:
    """{kernel name: entry point} for the modules `pieces` lowered under `schedule`.

    The lowered module comes from the disk cache when a verified entry is there (see `_load`);
    otherwise, or when a cached module fails to build, the pipeline runs and the entry is
    (re)written, only once the module has built. MLIR's and LLVM's diagnostics never reach
    stderr: they become the message of the exception (a kernel's reason to run as ATen)."""
    from torch_mlir import ir
    threads = runtime.threads()
    pipeline = pipeline_text(schedule, threads)
    source = _combined_text(pieces)
    key = sha256(json.dumps([source, pipeline, versions(), "cpu-1"]))
    started = time.perf_counter()
    lowered = _load(key)
    if lowered is not None:
        try:
            with runtime.Diagnostics() as diagnostics:
                module = diagnostics.check(lambda: ir.Module.parse(lowered, diagnostics.context))
                entries = _entry_points(module, names, schedule, diagnostics)
            log.debug("fastc: loaded %d native kernels (%s) from the cache in %.2f s", len(names), schedule,
                      time.perf_counter() - started)
            return entries
        except Exception as e:  # noqa: BLE001 - a damaged entry is rebuilt, never a failure
            STATS["cpu_disk_corrupt"] += 1
            log.warning("fastc: rebuilding cache entry %s: it does not build (%s)", _entry_path(key), _short(e))
    with runtime.Diagnostics() as diagnostics:
        from torch_mlir.dialects import torch as torch_d
        torch_d.register_dialect(diagnostics.context)
        module = diagnostics.check(lambda: run_pipeline(ir.Module.parse(source, diagnostics.context),
                                                        schedule, threads))
        text = str(module)
        entries = _entry_points(module, names, schedule, diagnostics)
    _store(key, text)
    log.debug("fastc: compiled %d native kernels (%s) in %.2f s", len(names), schedule, time.perf_counter() - started)
    return entries


def _entry_points(module, names: list[str], schedule: Schedule, diagnostics) -> dict:
    libs = [runtime.openmp_library()] if schedule.parallel and runtime.openmp_library() else []
    engine = diagnostics.check(lambda: runtime.execution_engine(module, libs))
    entries = diagnostics.check(lambda: {name: runtime.entry_point(engine, name) for name in names})
    _ENGINES.append(engine)
    return entries


def _combined_text(pieces) -> str:
    """One module holding every kernel's torch-mlir body and entry function.

    Each torch-mlir module prints its own affine-map aliases (#map, #map1, ...), so bodies are
    printed without aliases before they are put side by side."""
    bodies, entries, helpers = [], [], set()
    for module_text, entry in pieces:
        inner, used = use_vector_math(_strip_module(module_text))
        helpers |= used
        bodies.append(inner.replace("func.func @", "func.func private @", 1))
        entries.append(entry)
    return "module {\n" + "".join(sorted(helpers)) + "".join(bodies) + "".join(entries) + "}\n"


def _strip_module(text: str) -> str:
    """The operations inside `module { ... }` of a module printed without aliases."""
    start = text.index("module")
    body_start = text.index("{", start) + 1
    body_end = text.rindex("}")
    return text[body_start:body_end] + "\n"


# Disk cache of lowered modules: <cache>/cpu/<key>.mlir, the LLVM-dialect module after a header
# line (an MLIR comment, so the file stays readable by mlir-opt) that names the entry's key, the
# sha256 of the module text and the versions that wrote it. An entry is used only when all of
# these match: a file swapped with another kernel's, edited, truncated, emptied or overwritten is
# rebuilt and rewritten (atomically), with a log line, instead of running other code or making
# the kernel run as ATen. The cache directory is trusted code all the same (docs/cpu.md).
CACHE_FORMAT = "fastc-cpu-2"
_HEADER = "// fastc cache entry: "


def _entry_path(key: str):
    root = cache_dir()
    return None if root is None else root / "cpu" / f"{key}.mlir"


def _entry_text(key: str, text: str) -> str:
    header = {"format": CACHE_FORMAT, "key": key, "sha256": sha256(text), "versions": versions()}
    return _HEADER + json.dumps(header, sort_keys=True) + "\n" + text


def verified_entry(key: str, data: bytes) -> str:
    """The module text of cache entry `data` stored under `key`; ValueError saying what is wrong
    when it is not exactly what fastc wrote for that key."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    first, newline, module = text.partition("\n")
    if not first.startswith(_HEADER) or not newline:
        raise ValueError("no fastc header" if text else "empty")
    try:
        header = json.loads(first[len(_HEADER):])
    except ValueError:
        raise ValueError("unreadable header") from None
    if not isinstance(header, dict) or header.get("format") != CACHE_FORMAT:
        raise ValueError("another format")
    if header.get("key") != key:
        raise ValueError("written for another key (a swapped or copied file)")
    if header.get("versions") != versions():
        raise ValueError("written by other versions")
    if header.get("sha256") != sha256(module):
        raise ValueError("content does not match its checksum (edited or truncated)")
    return module


def _load(key: str) -> str | None:
    """The verified lowered module cached for `key`, or None (absent, disabled, or damaged:
    then the caller rebuilds it and `_store` rewrites the entry)."""
    path = _entry_path(key)
    if path is None:
        return None
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        STATS["cpu_disk_misses"] += 1
        return None
    except OSError as e:
        log.warning("fastc: cannot read cache entry %s (%s); rebuilding it", path, e)
        STATS["cpu_disk_misses"] += 1
        return None
    try:
        text = verified_entry(key, data)
    except ValueError as e:
        STATS["cpu_disk_corrupt"] += 1
        log.warning("fastc: rebuilding damaged cache entry %s: %s", path, e)
        return None
    STATS["cpu_disk_hits"] += 1
    return text


def _store(key: str, text: str) -> None:
    path = _entry_path(key)
    if path is None:
        return
    try:
        _atomic_write(path, _entry_text(key, text))
    except OSError as e:  # a read-only or full cache directory only costs the next process a rebuild
        log.debug("fastc: cannot write cache entry %s (%s)", path, e)
