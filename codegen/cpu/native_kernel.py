"""`NativeKernel`: one planned kernel compiled for the CPU, and what runs it.

`run` takes the kernel's inputs and returns its outputs, allocated here (the entry function
writes into them: destination-passing style). Entry points are per schedule, built on first use
by `compiler` (the build driver, build.py), once whichever threads ask.
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
        layout = [("tensor", p.rank) if p.kind == "tensor" else (p.kind,) for p in self.params]
        layout += [("tensor", p.rank) for p in self.out_params]
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
