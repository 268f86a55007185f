"""`NativeKernel`: one planned kernel compiled for the CPU, and what runs it.

`run` takes the kernel's inputs and returns its outputs, allocated here (the entry function
writes into them: destination-passing style). Entry points are per schedule, built on first use
by `compiler` (the build driver, build.py), once whichever threads ask. A kernel with static
sizes runs through `bound`'s callable, Python written for it that writes only data pointers
into an argument array filled once per thread (about 1.5-2.5 us around the machine code).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

import sympy
import torch

from fastc.costmodel import KernelFeatures, default_choices

from ..errors import Unsupported
from ..schedule import Schedule
from .params import Param
from .refusals import EMPTY
from .runtime import Arguments


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
        self.arguments = Arguments([_layout(p) for p in self.params + self.out_params])
        self._static = all(not isinstance(s, sympy.Basic) for shape in self.out_shapes for s in shape)
        self._shapes_at: dict = {}
        self._default = None
        # Static sizes and layouts: `run` calls `bound`'s callable too (one per schedule, made at
        # its first use, kept in `_bound`), so a measured first call times what later calls run.
        self._bindable = (self._static and not self.dynamic_inputs and not self.input_sizes
                          and not self.needs_symbols
                          and all(p.shape is not None for p in self.params + self.out_params if p.kind == "tensor"))
        self._bound: dict = {}

    @property
    def schedules(self) -> list[Schedule]:
        return list(self.entries)

    def candidate_features(self, candidate, k=None) -> dict:
        """The cost model's features of this kernel under `candidate` (ATEN or a Schedule), `k`
        its KernelFeatures at the problem (candidate_mlir.py)."""
        from .candidate_mlir import candidate_features
        source = self.split
        return candidate_features(source.code(), candidate, k, source.scheduled)

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
        if self._bindable:
            fast = self.bound(schedule)
            if fast is not None:
                return fast(*inputs)
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
            schedule = (self._default or self._default_static()) if self._static else \
                self.default_schedule(self.problem_sizes(symbols=symbols))
        self.arguments.call(self.entry(schedule), values + outs)
        return tuple(outs)

    def _default_static(self) -> Schedule:
        self._default = self.default_schedule(self.problem_sizes())
        return self._default

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
        for a kernel whose sizes are all static; None otherwise (then call `run`).

        Shapes and strides are fixed, so each thread's argument array is filled once (runtime.
        Arguments with `fixed`) and a call only checks each tensor input's layout (one
        `is_contiguous()` or `stride()` comparison: an input in another layout is copied into
        the compiled one, as `run` does), allocates the outputs and writes the data pointers.
        The callable is Python written for this kernel (`.source`), with no loop over arguments."""
        if not self._bindable:
            return None
        schedule = schedule or self._default or self._default_static()
        fast = self._bound.get(schedule)
        if fast is None:  # made once per schedule (two threads may both make it: either serves)
            fast = self._bound[schedule] = _static_call(self, self.entry(schedule)) or False
        return fast or None

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


def _layout(p: Param) -> tuple:
    """`p` in an Arguments layout."""
    if p.kind != "tensor":
        return (p.kind,)
    return ("tensor", 1, "flat") if p.flat else ("tensor", p.rank)


def _descriptor(p: Param) -> tuple:
    """(sizes, strides) of the memref descriptor a static tensor parameter is passed as."""
    return p.shape, p.strides if p.strides is not None else _contiguous_strides(p.shape)


def _contiguous_strides(shape) -> tuple:
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= max(int(size), 1)
    return tuple(reversed(strides))


def _static_call(kernel: NativeKernel, fn):
    """The Python function NativeKernel.bound returns: for a kernel taking (a0, a1) and making
    one output, say

        def run(a0, a1):
            if not a0.is_contiguous():
                a0 = a0.contiguous()
            if a1.stride() != S1:
                a1 = restrided(a1, S1)
            o0 = empty_strided(SHAPE0, STRIDES0, dtype=DTYPE0)
            try:
                buf, doubles, packed = local.arrays
            except AttributeError:
                buf, doubles, packed = arrays()
            buf[0] = buf[1] = a0.data_ptr()
            buf[9] = buf[10] = a1.data_ptr()
            buf[18] = buf[19] = o0.data_ptr()
            fn(packed)
            return (o0,)

    (slots: runtime.Arguments; every other slot was filled once per thread)."""
    params, outs = kernel.params, kernel.out_params
    arguments = Arguments(kernel.arguments.layout, fixed=[_descriptor(p) if p.kind == "tensor" else None
                                                          for p in params + outs])
    names = {"empty_strided": torch.empty_strided, "restrided": _restrided, "fn": fn,
             "local": arguments._local, "arrays": arguments.arrays}
    inputs = [f"a{i}" for i in range(len(params))]
    lines = [f"def run({', '.join(inputs)}):"]
    for i, p in enumerate(params):
        if p.kind != "tensor" or p.rank == 0:
            continue
        if p.contiguous:
            lines += [f"    if not a{i}.is_contiguous():", f"        a{i} = a{i}.contiguous()"]
        elif p.strides is not None:
            names[f"S{i}"] = p.strides
            lines += [f"    if a{i}.stride() != S{i}:", f"        a{i} = restrided(a{i}, S{i})"]
        else:  # a dynamic layout: the descriptor's strides would have to be the input's own
            return None
    for j, ((shape, strides), dtype) in enumerate(zip(kernel._output_shapes(None), kernel.out_dtypes)):
        names[f"SHAPE{j}"], names[f"DTYPE{j}"] = shape, dtype
        names[f"STRIDES{j}"] = strides if strides is not None else _contiguous_strides(shape)
        lines.append(f"    o{j} = empty_strided(SHAPE{j}, STRIDES{j}, dtype=DTYPE{j})")
    lines += ["    try:", "        buf, doubles, packed = local.arrays",
              "    except AttributeError:", "        buf, doubles, packed = arrays()"]
    values = inputs + [f"o{j}" for j in range(len(outs))]
    for i, (p, value) in enumerate(zip(params + outs, values)):
        slot = arguments.pointer_slot(i)
        if p.kind == "tensor":
            lines.append(f"    buf[{slot}] = buf[{slot + 1}] = {value}.data_ptr()")
        elif p.kind == "float":
            lines.append(f"    doubles[{slot}] = float({value})")
        else:
            lines.append(f"    buf[{slot}] = int({value})")
    lines += ["    fn(packed)", f"    return ({''.join(f'o{j}, ' for j in range(len(outs)))})"]
    source = "\n".join(lines) + "\n"
    exec(compile(source, f"<fastc native call {kernel.name}>", "exec"), names)  # noqa: S102 - our own text
    run = names["run"]
    run.__name__ = run.__qualname__ = kernel.name
    run.source = source
    return run


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
