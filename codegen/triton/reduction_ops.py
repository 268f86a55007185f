"""Reductions as accumulators: what each ATen reduction accumulates over a row, and how its
results are read.

sum/mean/prod/amax/amin/any/all are one accumulator; argmax/argmin/max.dim/min.dim keep positions too;
var/var_mean/native_layer_norm are two-pass (the mean, then squared deviations from it);
_softmax/_log_softmax are a max then a sum of exp (or one online accumulator when the row loops).
A result read at an index other than the current row raises Unsupported.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy
import torch

from fastc.ir import TensorType, node_type
from fastc.ir.op_table import OP_TABLE, reduced_dims

from ..errors import Unsupported
from .values import Value, compute_dtype

aten = torch.ops.aten
# The op table's reductions: each has its accumulators in ReductionOps._setup.
REDUCTIONS = {op for op, e in OP_TABLE.items() if e.kind == "reduction"}
ARG = {aten.argmax.default: "argmax", aten.argmin.default: "argmin", aten.max.dim: "argmax",
       aten.min.dim: "argmin"}
BIG_INDEX = str(2**63 - 1)
LOGICAL = {aten.any.dim: "max", aten.any.dims: "max", aten.any.default: "max",
           aten.all.dim: "min", aten.all.dims: "min", aten.all.default: "min"}


def has_reduction(kernel) -> bool:
    return any(n.target in REDUCTIONS for n in kernel.nodes)


@dataclass(eq=False)
class Acc:
    op: str                       # "sum", "prod", "max", "min", "argmax", "argmin" or "softmax" (online)
    value: object                 # () -> Value: the accumulated operand at the full index
    dtype: torch.dtype
    deps: set = field(default_factory=set)
    level: int = 0
    name: str = ""                # the row result variable, once its loop has run
    init: str | None = None       # the identity, when not the op's own (any/all)
    index: str = ""               # argmax/argmin: the row variable of the position (int64)
    total: str = ""               # online softmax: the row's sum of exp(x - max)
    exact: bool = False           # argmax/argmin of max.dim/min.dim: the value read at the index


def _get(node, pos, name, default=None):
    return node.args[pos] if len(node.args) > pos else node.kwargs.get(name, default)


def reduced(node) -> tuple[tuple, tuple[int, ...]]:
    """(input shape, reduced dims) of reduction `node` (its dims as the op table reads them)."""
    dims = reduced_dims(node)
    if dims is None:
        raise Unsupported(f"{node.target} over symbolic dims {node.args[1:2]}")
    return tuple(node_type(node.args[0]).shape), dims


class ReductionOps:
    """Accumulators of a reduction kernel's ops (mixed into the template, which supplies body,
    shape, dims, full, K and persistent)."""


    # --- reading results ------------------------------------------------------------------
    def row_ok(self, index, keepdim: bool) -> bool:
        """Is `index` (into a reduction result) the current row?"""
        if keepdim:
            want = tuple(sympy.Integer(0) if d in self.dims else self.full[d] for d in range(len(self.shape)))
        else:
            want = tuple(self.full[d] for d in range(len(self.shape)) if d not in self.dims)
        return len(index) == len(want) and all(sympy.simplify(a - b) == 0 for a, b in zip(index, want))

    def full_ok(self, index) -> bool:
        return len(index) == len(self.full) and all(
            d in self.dims or sympy.simplify(index[d] - self.full[d]) == 0 for d in range(len(self.full)))

    def _row(self, node, make, keepdim):
        def fn(index):
            if not self.row_ok(index, keepdim):
                raise Unsupported(f"{node.target} result read at another row ({index})")
            return make()
        return fn

    def _at_row(self, node, make):
        def fn(index):
            if not self.full_ok(index):
                raise Unsupported(f"{node.target} result read at another row ({index})")
            return make(index)
        return fn

    def result(self, acc: Acc) -> Value:
        if not acc.name:
            raise Unsupported("a reduction result read before its loop (cycle inside the kernel)")
        return Value(acc.name, acc.dtype, True)

    # --- accumulators per reduction op ----------------------------------------------------
    def _acc(self, op, value, dtype, deps=()):
        acc = Acc(op, value, dtype, set(deps))
        self.accs.append(acc)
        return acc

    def _setup(self, node):
        b, x, t = self.body, node.args[0], node.target
        out = node_type(node)
        out_dtype = out.dtype if isinstance(out, TensorType) else node_type(x).dtype
        cdt = compute_dtype(out_dtype)
        xval = lambda index=None: b.value(x, self.full if index is None else index)
        deps = self._upstream(x)
        K = b.code(self.K)
        keepdim = bool(_get(node, 2, "keepdim", False))
        if t in (aten.sum.dim_IntList, aten.sum.default, aten.mean.dim, aten.mean.default):
            acc = self._acc("sum", lambda: b.cast(xval(), cdt), cdt, deps)
            mean = t in (aten.mean.dim, aten.mean.default)
            make = (lambda: b.tmp(f"{acc.name} / {K}", cdt)) if mean else (lambda: self.result(acc))
            b.specials[(node, None)] = self._row(node, make, keepdim)
        elif t in (aten.prod.dim_int, aten.prod.default):
            acc = self._acc("prod", lambda: b.cast(xval(), cdt), cdt, deps)
            b.specials[(node, None)] = self._row(node, lambda: self.result(acc), keepdim)
        elif t in LOGICAL:
            acc = self._acc(LOGICAL[t], lambda: b.cast(b.cast(xval(), torch.bool), torch.int32), torch.int32, deps)
            acc.init = "0" if LOGICAL[t] == "max" else "1"
            b.specials[(node, None)] = self._row(node, lambda: b.tmp(f"({acc.name} != 0)", torch.bool), keepdim)
        elif t in ARG:
            vdt = compute_dtype(node_type(x).dtype)
            acc = self._acc(ARG[t], lambda: b.cast(xval(), vdt), vdt, deps)
            position = self._row(node, lambda: Value(acc.index, torch.int64, True), keepdim)
            if t in (aten.max.dim, aten.min.dim):
                acc.exact = vdt.is_floating_point  # -0.0 vs 0.0: the element at the index
                b.specials[(node, 0)] = self._row(node, lambda: self.result(acc), keepdim)
                b.specials[(node, 1)] = position
            else:
                b.specials[(node, None)] = position
        elif t in (aten.amax.default, aten.amin.default):
            acc = self._acc("max" if t is aten.amax.default else "min", lambda: b.cast(xval(), cdt), cdt, deps)
            b.specials[(node, None)] = self._row(node, lambda: self.result(acc), keepdim)
        elif t in (aten.var.correction, aten.var_mean.correction):
            keepdim = bool(node.kwargs.get("keepdim", False))
            correction = node.kwargs.get("correction", 1)
            correction = 1 if correction is None else correction
            if isinstance(correction, float) and correction.is_integer():
                correction = int(correction)
            mean, var = self._moments(x, cdt, deps, correction)
            if t is aten.var.correction:
                b.specials[(node, None)] = self._row(node, var, keepdim)
            else:
                b.specials[(node, 0)] = self._row(node, var, keepdim)
                b.specials[(node, 1)] = self._row(node, mean, keepdim)
        elif t in (aten._softmax.default, aten._log_softmax.default):
            cdt = compute_dtype(node_type(node).dtype)
            if self.persistent:  # the row is in registers: max, then the sum of exp
                mx = self._acc("max", lambda: b.cast(xval(), cdt), cdt, deps)
                row_max = lambda: self.result(mx)
                total = self._acc("sum", lambda: b.tmp(f"tl.exp({shifted().code})", cdt), cdt, deps | {mx})
                row_sum = lambda: self.result(total)
            else:  # online: max and rescaled sum in one loop over the row
                online = self._acc("softmax", lambda: b.cast(xval(), cdt), cdt, deps)
                row_max = lambda: self.result(online)
                row_sum = lambda: Value(online.total, cdt, True)
            shifted = lambda index=None: b.tmp(f"{b.cast(xval(index), cdt).code} - {row_max().code}", cdt)
            if t is aten._softmax.default:
                make = lambda index: b.tmp(
                    f"{b.tmp(f'tl.exp({shifted(index).code})', cdt).code} / {row_sum().code}", cdt)
            else:
                make = lambda index: b.tmp(f"{shifted(index).code} - tl.log({row_sum().code})", cdt)
            b.specials[(node, None)] = self._at_row(node, make)
        elif t is aten.native_layer_norm.default:
            _, _, weight, bias, eps = node.args[:5]
            mean, var = self._moments(x, cdt, deps, 0)
            rstd = lambda: b.tmp(f"tl.rsqrt({var().code} + {eps!r})", cdt)
            axis = len(self.shape) - len(node.args[1])

            def normed(index):
                y = b.tmp(f"({b.cast(xval(index), cdt).code} - {mean().code}) * {rstd().code}", cdt).code
                if weight is not None:
                    y = b.tmp(f"{y} * {b.cast(b.value(weight, index[axis:]), cdt).code}", cdt).code
                if bias is not None:
                    y = b.tmp(f"{y} + {b.cast(b.value(bias, index[axis:]), cdt).code}", cdt).code
                return Value(y, cdt, True)
            b.specials[(node, 0)] = self._at_row(node, normed)
            b.specials[(node, 1)] = self._row(node, mean, True)
            b.specials[(node, 2)] = self._row(node, rstd, True)
        else:
            raise Unsupported(f"{t} in a reduction kernel")
        self.node_accs[node] = [a for a in self.accs if a not in sum(self.node_accs.values(), [])]

    def _moments(self, x, cdt, deps, correction):
        """Two-pass mean and variance of x over the row: (mean(), var()) value makers."""
        b, K = self.body, self.body.code(self.K)
        total = self._acc("sum", lambda: b.cast(b.value(x, self.full), cdt), cdt, deps)
        mean = lambda: b.tmp(f"{self.result(total).code} / {K}", cdt)

        def squared():
            d = b.tmp(f"{b.cast(b.value(x, self.full), cdt).code} - {mean().code}", cdt).code
            return b.tmp(f"{d} * {d}", cdt)
        sq = self._acc("sum", squared, cdt, deps | {total})
        divisor = b.code(sympy.Max(self.K - correction, 0)) if correction else K
        var = lambda: b.tmp(f"{self.result(sq).code} / {divisor}", cdt)
        return mean, var

    def _upstream(self, node) -> set:
        """Accumulators of the reductions `node` depends on inside the kernel."""
        seen, stack, found = set(), [node], set()
        while stack:
            n = stack.pop()
            if n in seen or n not in self.body.members:
                continue
            seen.add(n)
            found |= set(self.node_accs.get(n, ()))
            stack += n.all_input_nodes
        return found
