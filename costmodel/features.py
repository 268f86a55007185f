"""What a choices object is told about each candidate: plain values, the same a cost model trains on.

- `FusionCandidate`: two kernels plan-kernels may legally merge.
- `KernelFeatures`: one planned kernel on one target, at one problem when its sizes are known
  (kind, op count and ops, problem sizes, input layouts, dtype, bytes moved).
- `ATEN`: the candidate "run the kernel's own ATen ops" (every other candidate is a Schedule of
  its generated code).
"""
from __future__ import annotations

import operator
from collections import Counter
from dataclasses import asdict, dataclass, field, replace

import sympy
import torch

from fastc.ir.schedule import Schedule
from fastc.ir.targets import target_name
from fastc.ir.types import TensorType, TupleType, node_type

ATEN = "aten"


@dataclass(frozen=True)
class FusionCandidate:
    """A producer kernel and a consumer kernel that may legally become one kernel of `kind`."""
    producer_kind: str             # "pointwise", "reduction", "matmul" or "view"
    consumer_kind: str
    kind: str                      # of the merged kernel
    producer_ops: int
    consumer_ops: int
    numel: int | None = None       # elements the merged kernel computes (None: symbolic)
    target: str = "aten"

    @property
    def ops(self) -> int:
        """Ops in the merged kernel."""
        return self.producer_ops + self.consumer_ops


@dataclass(frozen=True)
class KernelFeatures:
    """One planned kernel on `target`. `sizes` are the problem sizes schedules are chosen by
    (pointwise {xnumel}; reduction {xnumel, rnumel}; matmul {M, N, K}; native CPU {xnumel}),
    None while they are not known (dynamic shapes at compile time)."""
    name: str
    kind: str
    target: str
    sizes: dict | None = None
    ops: int = 0
    op_counts: dict = field(default_factory=dict)    # op name -> how many
    dtype: str | None = None                         # of the first output
    inputs: tuple = ()       # per input: [shape, strides, dtype] of a tensor, or a scalar's value
    bytes_read: int | None = None
    bytes_written: int | None = None
    device: str = "cpu"
    #: describe(candidate) -> {feature: value}: the cost model's features of this kernel under a
    #: candidate (mlir_features.py: its MLIR as the target lowers it), where the target can say;
    #: None otherwise. Not part of the kernel's identity nor of its record.
    describe: object = field(default=None, compare=False, repr=False)

    def at(self, sizes: dict, inputs: list | None = None, kernel=None) -> "KernelFeatures":
        """These features at one problem; with `inputs` (the kernel's real inputs) and `kernel`
        (its fastc.ir.kernel_plan.Kernel), layouts and bytes are those of these inputs."""
        if inputs is None:
            return replace(self, sizes=dict(sizes))
        written = self.bytes_written
        if written is None and kernel is not None:
            written = _number(kernel.bytes_written(), _bind_symbols(kernel, inputs))
        device = next((x.device.type for x in inputs if isinstance(x, torch.Tensor)), self.device)
        return replace(self, sizes=dict(sizes), inputs=tuple(_describe(x) for x in inputs),
                       bytes_read=sum(x.numel() * x.element_size() for x in inputs if isinstance(x, torch.Tensor)),
                       bytes_written=written, device=device)

    def record(self) -> dict:
        """JSON-ready (lists, strings and numbers only)."""
        out = asdict(replace(self, describe=None))
        out.pop("describe")
        out["inputs"] = [list(x) if isinstance(x, tuple) else x for x in self.inputs]
        return out


def kernel_features(kernel, target: str, sizes: dict | None = None) -> KernelFeatures:
    """Features of `kernel` (a fastc.ir.kernel_plan.Kernel) known from the graph alone: sizes,
    layouts and bytes are numbers when its shapes are static."""
    ops = [n for n in kernel.nodes if n.target is not operator.getitem]
    outputs = [t for t in (_tensor_type(n) for n in kernel.outputs) if t is not None]
    inputs = tuple(_describe(n.meta["val"]) if "val" in n.meta else _describe_type(node_type(n))
                   for n in kernel.inputs)
    return KernelFeatures(
        name=kernel.name, kind=kernel.kind, target=target, sizes=dict(sizes) if sizes else None,
        ops=len(ops), op_counts=dict(Counter(target_name(n.target) for n in ops)),
        dtype=str(outputs[0].dtype).removeprefix("torch.") if outputs else None, inputs=inputs,
        bytes_read=_number(kernel.bytes_read(), {}), bytes_written=_number(kernel.bytes_written(), {}),
        device=outputs[0].device.split(":")[0] if outputs else "cpu")


def static_shapes(kernel) -> bool:
    """Whether every input and output of `kernel` has a shape known at compile time (then the
    kernel has one problem, and its choice can be made once)."""
    def static(t) -> bool:
        if isinstance(t, TensorType):
            return t.is_static
        if isinstance(t, TupleType):
            return all(t_ is None or static(t_) for t_ in t.items)
        return False  # a scalar input: a size symbol's value, say
    return all(static(node_type(n)) for n in [*kernel.inputs, *kernel.outputs])


def problem_key(inputs) -> tuple:
    """What identifies one problem of a kernel: its inputs' shapes, strides and dtypes (and the
    values of scalar inputs). One choice is made per kernel and problem."""
    return tuple((tuple(x.shape), tuple(x.stride()), x.dtype) if isinstance(x, torch.Tensor) else x
                 for x in inputs)


def candidate_record(candidate) -> str | dict:
    """A candidate as JSON: "aten", a library implementation's name, or a schedule's fields."""
    return candidate if isinstance(candidate, str) else asdict(candidate)


def candidate_text(candidate) -> str:
    """A short human description: ATen; native, 1 thread / threads, tile N; or Triton blocks."""
    if candidate == ATEN:
        return "ATen"
    if isinstance(candidate, str):  # a library op's implementation (kind "library")
        return candidate
    s: Schedule = candidate
    if s.XBLOCK == 0:  # a native CPU schedule
        text = "native, threads" if s.parallel else "native, 1 thread"
        if s.loops:
            text += f", tiles {s.tile_outer or 'whole'}x{s.tile_inner or 'whole'}"
            text += ", vectorized" if s.vectorize else ""
            text += f", unroll {s.unroll}" if s.unroll > 1 else ""
        return text
    blocks = (f"{s.BLOCK_M}x{s.BLOCK_N}x{s.BLOCK_K}" if s.BLOCK_M else
              f"XBLOCK {s.XBLOCK}" + (f", RBLOCK {s.RBLOCK}" if s.RBLOCK else ""))
    return f"{blocks}, {s.num_warps} warps" + (f", {s.num_stages} stages" if s.num_stages > 1 else "")


def _tensor_type(node):
    t = node_type(node)
    if isinstance(t, TupleType):
        return next((x for x in t.items if isinstance(x, TensorType)), None)
    return t if isinstance(t, TensorType) else None


def _describe(x):
    if isinstance(x, torch.Tensor):
        return ([_plain(s) for s in x.shape], [_plain(s) for s in x.stride()],
                str(x.dtype).removeprefix("torch."))
    return _plain(x) if isinstance(x, (int, float, bool, torch.SymInt, torch.SymFloat)) else type(x).__name__


def _describe_type(t):
    """An input known only by its type (a graph parsed from text): no strides."""
    if isinstance(t, TensorType):
        return ([_plain(s) for s in t.shape], None, str(t.dtype).removeprefix("torch."))
    return str(t)


def _plain(v):
    """An int or float, or the text of a symbolic size."""
    if isinstance(v, (torch.SymInt, torch.SymFloat)):
        v = v.node.expr
    if isinstance(v, sympy.Basic):
        return int(v) if v.is_Integer else str(v)
    return v


def _bind_symbols(kernel, inputs) -> dict:
    """Size symbols of `kernel`'s input shapes -> their values in the real `inputs`."""
    bound = {}
    for n, x in zip(kernel.inputs, inputs):
        t = node_type(n)
        if isinstance(t, TensorType) and isinstance(x, torch.Tensor) and len(t.shape) == x.dim():
            for size, real in zip(t.shape, x.shape):
                if isinstance(size, sympy.Symbol):
                    bound[size] = int(real)
    return bound


def _number(expr, bound: dict) -> int | None:
    """`expr` (int or sympy) as an int with `bound` symbols substituted; None if still symbolic."""
    if isinstance(expr, int):
        return expr
    value = sympy.sympify(expr).xreplace(bound)
    return int(value) if value.is_Integer else None
