"""Splitting a kernel by rows: what `Schedule(parallel=True)` is on the native CPU target.

A kernel whose every output row (index along dim 0) is computed from the same rows of its inputs
alone runs as `chunks` calls of one serial function compiled for `rows / chunks` rows, on the
threads of torch's own OpenMP pool (gomp.py): each call is given the same argument descriptors
with the data pointers moved `c * chunk rows * stride 0` further. The serial schedule of such a
kernel runs the same chunks one after the other, so every row is computed by the same machine
code under both schedules and the results are the same, bit for bit; no second thread pool exists.

`row_split(kernel, threads)` decides, conservatively, from the kernel's FX ops (an allow-list):
every value is either *split* (its dim 0 is the kernel's rows, in `chunks` equal parts) or *whole*
(the same in every chunk: a broadcast operand, a weight, a scalar), and

- pointwise ops (with broadcasting): an operand with the result's rank and dim 0 is split like
  the result, any other operand (lower rank, dim 0 of size 1) is whole;
- reductions: split when they keep dim 0 (layer norm, RMS norm's mean, softmax over the last
  dims); a reduction over dim 0 makes its input whole (and then the kernel is not split, since
  every output must be split);
- views: view/reshape (a row-major reinterpretation: `chunks` equal parts of dim 0 are the same
  elements before and after when both sizes divide), permute/transpose/unsqueeze/squeeze/select/
  slice that leave dim 0 in place, expand that keeps it (or broadcasts a whole value along it);
- anything else, a symbolic size, an output that is not split: not split (the reason is
  returned), and the kernel runs whole. The chunks are as many as the largest number up to the
  threads that divides every split value's rows (none: not split).

The chunk kernel is the same ops at the chunk's sizes (size arguments of views and expands
rewritten, example values recomputed on fake tensors), with each split tensor's layout the whole
tensor's (its strides), so the caller's descriptors fit both.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

import sympy
import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from fastc.ir.op_table import entry as op_entry, reduced_dims

from .subgraph import example_value, size_expr

aten = torch.ops.aten

SPLIT, WHOLE = "split", "whole"

_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
_FILLS = {aten.full.default}


class NotSplit(Exception):
    """Why a kernel is not split by rows."""


@dataclass
class ChunkKernel:
    """The ops of a kernel at the size of one chunk, as the per-kernel stages take a kernel."""
    id: int
    kind: str
    name: str
    inputs: list
    nodes: list
    outputs: list


@dataclass
class RowSplit:
    """A kernel split into `chunks` row chunks: per input whether it is split, the rows of each
    split input and output in one chunk, and the chunk kernel."""
    chunks: int
    split_inputs: list[bool]
    input_rows: list[int | None]          # rows per chunk of each input (None: passed whole)
    output_rows: list[int]
    kernel: ChunkKernel = field(repr=False)

    def text(self) -> str:
        return (f"split into {self.chunks} chunks of rows (outputs: "
                + ", ".join(str(r) for r in self.output_rows) + " rows each)")


def row_split(kernel, threads: int) -> RowSplit | str:
    """The split of `kernel` into row chunks for `threads` threads, or the reason it is not split.
    The chunks are as many as the largest number up to `threads` that divides the rows of every
    split value (8 rows on 16 threads: 8 chunks)."""
    if threads < 2:
        return "one thread"
    try:
        states = _states(kernel)
        rows = math.gcd(*[_shape(n)[0] for n, s in states.items() if s == SPLIT and _is_tensor(n)],
                        *[size_expr(v.shape[0]) for n, s in states.items() if isinstance(s, tuple)
                          for v, e in zip(example_value(n), s) if e == SPLIT])
        chunks = max((c for c in range(2, threads + 1) if rows % c == 0), default=None)
        if chunks is None:
            raise NotSplit(f"{rows} rows do not divide into 2 to {threads} chunks")
        return RowSplit(chunks, [states[n] == SPLIT for n in kernel.inputs],
                        [_shape(n)[0] // chunks if states[n] == SPLIT else None for n in kernel.inputs],
                        [_shape(n)[0] // chunks for n in kernel.outputs],
                        _chunk_kernel(kernel, states, chunks))
    except NotSplit as e:
        return str(e)


# -- the decision ---------------------------------------------------------------------------------

def _shape(node) -> tuple[int, ...]:
    """The static shape of a tensor value (NotSplit for a symbolic one)."""
    val = example_value(node) if isinstance(node, fx.Node) else node
    shape = tuple(size_expr(s) for s in val.shape)
    if any(isinstance(s, sympy.Basic) for s in shape):
        raise NotSplit(f"{getattr(node, 'name', 'a value')} has a symbolic size (dynamic shapes)")
    return tuple(int(s) for s in shape)


def _is_tensor(node) -> bool:
    return isinstance(node, fx.Node) and isinstance(example_value(node), torch.Tensor)


def _states(kernel) -> dict:
    """{node: SPLIT | WHOLE (a tuple of them for an op with several results)}."""
    state: dict = {}
    for n in kernel.inputs:
        if not _is_tensor(n):
            state[n] = WHOLE   # scalars
        else:
            _shape(n)          # static sizes only

    def get(v):
        """v's state; None for a kernel input that no op has decided yet (free)."""
        if not isinstance(v, fx.Node):
            return WHOLE
        return state.get(v)

    def want(v, s: str, why: str):
        """Operand v must be `s` for op `why`; a free kernel input becomes it."""
        if not isinstance(v, fx.Node):
            if s == SPLIT:
                raise NotSplit(f"{why}: a constant operand where rows are needed")
            return
        cur = get(v)
        if cur is None:
            state[v] = s
        elif cur != s:
            raise NotSplit(f"{why}: {v.name} is {cur} where {s} is needed")

    def splittable(v, op: str) -> bool:
        """v may be split (it is, or is a free input whose dim 0 divides)."""
        cur = get(v)
        if cur is not None:
            return cur == SPLIT
        shape = _shape(v)
        return len(shape) >= 1 and shape[0] > 1

    for n in kernel.nodes:
        why = f"{n.name} ({n.target})"
        if n.op != "call_function":
            raise NotSplit(f"{why}: not an op")
        if n.target is operator.getitem:
            source, index = n.args
            s = get(source)
            state[n] = s[index] if isinstance(s, tuple) else s
            continue
        e = op_entry(n.target)
        if e is None:
            raise NotSplit(f"{why}: not an op the row split knows")
        tensors = [a for a in _flat(n.args, n.kwargs) if _is_tensor(a)]
        if e.kind == "pointwise":
            state[n] = _pointwise(n, tensors, want, splittable, why)
        elif e.kind == "reduction":
            state[n] = _reduction(n, tensors, want, splittable, why)
        elif e.kind == "view":
            state[n] = _view(n, want, splittable, why)
        else:
            raise NotSplit(f"{why}: a {e.kind} op")
    for n in kernel.outputs:
        if get(n) != SPLIT:
            shape = _shape(n)
            if not shape or shape[0] < 2:
                raise NotSplit(f"output {n.name} has {shape[0] if shape else 'no'} row: nothing to split")
            raise NotSplit(f"output {n.name} is not computed row by row")
    for n in kernel.inputs:
        state.setdefault(n, WHOLE)   # unused inputs
    return state


def _flat(args, kwargs) -> list:
    out = []
    fx.node.map_aggregate((args, kwargs), lambda a: out.append(a) or a)
    return out


def _pointwise(n, tensors, want, splittable, why):
    if n.target in _FILLS:
        return WHOLE
    shape = _shape(n)
    if not shape:
        for a in tensors:
            want(a, WHOLE, why)
        return WHOLE
    rows = shape[0]
    carried = [a for a in tensors if len(_shape(a)) == len(shape) and _shape(a)[0] == rows and rows > 1]
    for a in tensors:
        if a not in carried:
            want(a, WHOLE, why)  # broadcast along dim 0: the same in every chunk
    if carried and any(splittable(a, why) for a in carried):
        for a in carried:
            want(a, SPLIT, why)
        return SPLIT
    for a in carried:
        want(a, WHOLE, why)
    return WHOLE


def _reduction(n, tensors, want, splittable, why):
    x = n.args[0]
    for a in tensors:
        if a is not x:
            want(a, WHOLE, why)   # layer norm's weight and bias
    dims = reduced_dims(n)
    if dims is None:
        raise NotSplit(f"{why}: reduced dims are not constants")
    results = example_value(n)
    count = len(results) if isinstance(results, (tuple, list)) else None
    if 0 in dims or not _shape(x) or not splittable(x, why):
        want(x, WHOLE, why)
        return WHOLE if count is None else (WHOLE,) * count
    want(x, SPLIT, why)
    rows = _shape(x)[0]
    for r in (results if count is not None else [results]):
        if not isinstance(r, torch.Tensor) or not r.shape or size_expr(r.shape[0]) != rows:
            raise NotSplit(f"{why}: a result without the input's rows")
    return SPLIT if count is None else (SPLIT,) * count


def _view(n, want, splittable, why):
    x = n.args[0]
    xs, shape = _shape(x), _shape(n)
    t = n.target
    if t in _VIEWS:
        keeps = bool(shape) and shape[0] > 1
    elif t is aten.permute.default:
        keeps = len(xs) > 0 and n.args[1][0] % len(xs) == 0
    elif t is aten.transpose.int:
        keeps = len(xs) > 0 and n.args[1] % len(xs) != 0 and n.args[2] % len(xs) != 0
    elif t is aten.t.default:
        keeps = len(xs) == 1
    elif t is aten.unsqueeze.default:
        keeps = n.args[1] % (len(xs) + 1) != 0
    elif t is aten.squeeze.dim:
        keeps = len(xs) > 0 and n.args[1] % len(xs) != 0
    elif t is aten.squeeze.dims:
        keeps = len(xs) > 0 and all(d % len(xs) != 0 for d in n.args[1])
    elif t in (aten.slice.Tensor, aten.select.int):
        dim = n.args[1] if len(n.args) > 1 else n.kwargs.get("dim", 0)
        keeps = len(xs) > 0 and dim % len(xs) != 0
    elif t is aten.alias.default:
        keeps = True
    elif t is aten.expand.default:
        if len(xs) == len(shape) and xs and xs[0] == shape[0] and xs[0] > 1:
            keeps = True
        else:  # a broadcast along dim 0 (new leading dims, or dim 0 of size 1)
            want(x, WHOLE, why)
            return SPLIT if shape and shape[0] > 1 else WHOLE
    else:
        keeps = False
    if keeps and splittable(x, why):
        want(x, SPLIT, why)
        return SPLIT
    want(x, WHOLE, why)
    return WHOLE


# -- the chunk kernel -----------------------------------------------------------------------------

def _fake(value, mode):
    """`value` as fake tensors of `mode` (same sizes, strides, dtype), what torch-mlir reads types
    from (a tuple of meta tensors it cannot); other values as they are."""
    if isinstance(value, torch.Tensor):
        with mode:
            return torch.empty_strided(tuple(int(s) for s in value.shape), tuple(int(s) for s in value.stride()),
                                       dtype=value.dtype, device="cpu")   # constants' examples are meta
    if isinstance(value, (tuple, list)):
        return type(value)(_fake(v, mode) for v in value)
    return value


def _set_val(node, value) -> None:
    node.meta = {"val": value}
    if isinstance(value, torch.Tensor):
        node.meta["tensor_meta"] = _extract_tensor_metadata(value)


def _chunk_kernel(kernel, states: dict, chunks: int) -> ChunkKernel:
    from torch._subclasses.fake_tensor import FakeTensorMode
    mode = FakeTensorMode()
    graph = fx.Graph()
    env: dict = {}
    inputs = []
    for i, n in enumerate(kernel.inputs):
        p = graph.placeholder(f"in{i}")
        val = _fake(example_value(n), mode)
        if states[n] == SPLIT:
            with mode:
                val = val.narrow(0, 0, val.shape[0] // chunks)   # the whole tensor's strides
        _set_val(p, val)
        env[n] = p
        inputs.append(p)
    nodes = []
    for n in kernel.nodes:
        c = graph.node_copy(n, lambda a: env[a])
        if states[n] == SPLIT:
            c.args = _chunk_args(n, c.args, chunks)
        args, kwargs = fx.node.map_arg((c.args, c.kwargs), lambda a: a.meta["val"])
        try:
            with mode:
                val = c.target(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - an op that refuses the chunk's sizes: no split
            raise NotSplit(f"{n.name} at the chunk's size: {type(e).__name__}: {str(e)[:200]}") from None
        _set_val(c, val)
        env[n] = c
        nodes.append(c)
    outputs = [env[n] for n in kernel.outputs]
    for n, c in zip(kernel.outputs, outputs):
        full = example_value(n)
        shape = (int(size_expr(full.shape[0])) // chunks, *c.meta["val"].shape[1:])
        # The output is written in the layout the caller allocates for the whole kernel.
        with mode:
            out = torch.empty_strided(shape, tuple(int(s) for s in full.stride()), dtype=full.dtype)
        _set_val(c, out)
    graph.output(tuple(outputs))
    return ChunkKernel(kernel.id, kernel.kind, f"{kernel.name}.rows", inputs, nodes, outputs)


def _chunk_args(n, args, chunks: int) -> tuple:
    """`args`, the arguments of the copy of op `n` (split), at the chunk's size: the size lists of
    views and expands."""
    args = list(args)
    if n.target in _VIEWS:
        shape = list(_shape(n))
        args[1] = [shape[0] // chunks, *shape[1:]]
    elif n.target is aten.expand.default:
        sizes = list(args[1])
        if sizes[0] != -1:
            sizes[0] = _shape(n)[0] // chunks
        args[1] = sizes
    return tuple(args)
