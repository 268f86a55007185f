"""The reduction template: rows of XBLOCK per program, each row looped over in RBLOCK steps.

All reductions of a kernel read the same input shape F and reduce the same dims D (inner or
outer: a row is whatever D spans, read at its strides). Composite reductions split into
accumulators: mean and var two-pass (mean first, then squared deviations), softmax and
log_softmax (max, then the sum of exp), layer norm (mean, variance). An accumulator that needs
another's result runs in a later loop; each loop computes all accumulators of its level.
Row-shaped outputs are stored after the loops; F-shaped ones in a last loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import sympy
import torch

from fastc.ir import TensorType, node_type

from ..errors import Unsupported
from ..schedule import PERSISTENT_MAX, persistent_reduction
from .indexing import as_expr, is_one, numel, ravel, same_size, split, symbol
from .options import LowerOptions
from .spec import KernelSpec, assemble, output_slots
from .values import TL_DTYPES, KernelBody, Value, compute_dtype

aten = torch.ops.aten
REDUCTIONS = {
    aten.sum.dim_IntList, aten.sum.default, aten.mean.dim, aten.mean.default, aten.amax.default,
    aten.amin.default, aten.var.correction, aten.var_mean.correction, aten._softmax.default,
    aten._log_softmax.default, aten.native_layer_norm.default,
    aten.any.dim, aten.any.dims, aten.any.default, aten.all.dim, aten.all.dims, aten.all.default,
    aten.argmax.default, aten.argmin.default, aten.max.dim, aten.min.dim,
}
ARG = {aten.argmax.default: "argmax", aten.argmin.default: "argmin", aten.max.dim: "argmax",
       aten.min.dim: "argmin"}
BIG_INDEX = str(2**63 - 1)
LOGICAL = {aten.any.dim: "max", aten.any.dims: "max", aten.any.default: "max",
           aten.all.dim: "min", aten.all.dims: "min", aten.all.default: "min"}


def has_reduction(kernel) -> bool:
    return any(n.target in REDUCTIONS for n in kernel.nodes)


@dataclass(eq=False)
class Acc:
    op: str                       # "sum", "max", "min", "argmax", "argmin" or "softmax" (online)
    value: object                 # () -> Value: the accumulated operand at the full index
    dtype: torch.dtype
    deps: set = field(default_factory=set)
    level: int = 0
    name: str = ""                # the row result variable, once its loop has run
    init: str | None = None       # the identity, when not the op's own (any/all)
    index: str = ""               # argmax/argmin: the row variable of the position (int64)
    total: str = ""               # online softmax: the row's sum of exp(x - max)


def _get(node, pos, name, default=None):
    return node.args[pos] if len(node.args) > pos else node.kwargs.get(name, default)


def reduced(node) -> tuple[tuple, tuple[int, ...]]:
    """(input shape, reduced dims) of reduction `node`."""
    shape = node_type(node.args[0]).shape
    rank, t = len(shape), node.target
    if t in (aten._softmax.default, aten._log_softmax.default):
        dims = [node.args[1]]
    elif t is aten.native_layer_norm.default:
        dims = list(range(rank - len(node.args[1]), rank))
    elif t in (aten.sum.default, aten.mean.default, aten.any.default, aten.all.default):
        dims = None
    elif t in (aten.any.dim, aten.all.dim, aten.max.dim, aten.min.dim):
        dims = [node.args[1]]
    elif t in (aten.argmax.default, aten.argmin.default):
        dims = None if _get(node, 1, "dim") is None else [_get(node, 1, "dim")]
    else:
        dims = _get(node, 1, "dim")
    if not dims:
        dims = list(range(rank))
    return tuple(shape), tuple(sorted(d + rank if d < 0 else d for d in dims))


class ReductionLowering:
    def __init__(self, kernel, opts: LowerOptions = LowerOptions(), persistent: bool = False):
        self.kernel, self.persistent = kernel, persistent
        self.body = body = KernelBody(kernel, "reduction", opts)
        self.reductions = [n for n in kernel.nodes if n.target in REDUCTIONS]
        self.shape, self.dims = reduced(self.reductions[0])
        for n in self.reductions[1:]:
            if reduced(n) != (self.shape, self.dims) and not self._same(reduced(n)):
                raise Unsupported(f"{n.target} reduces {list(reduced(n)[0])} over {list(reduced(n)[1])}, "
                                  f"another reduction of the kernel {list(self.shape)} over {list(self.dims)}")
        F, D = self.shape, self.dims
        if numel(F) == 0:
            raise Unsupported(f"{self.reductions[0].target} of an empty tensor {list(F)}")
        self.row_shape = [F[d] for d in range(len(F)) if d not in D]
        self.red_shape = [F[d] for d in D]
        self.K = numel(self.red_shape)
        self.xindex, self.rindex = symbol("xindex"), symbol("rindex")
        body.masks[self.xindex], body.masks[self.rindex] = "xmask", "rmask"
        self.xdims = self._dims("x", self.xindex, self.row_shape, "xmask")
        self.rdims = self._dims("r", self.rindex, self.red_shape, "rmask")
        rows, red = iter(body.unravel(self.xindex, self.row_shape)), iter(body.unravel(self.rindex, self.red_shape))
        self.full = tuple(next(red) if d in D else next(rows) for d in range(len(F)))
        self.accs: list[Acc] = []
        self.node_accs: dict = {}
        for n in self.reductions:
            self._setup(n)

    def _same(self, other) -> bool:
        shape, dims = other
        return dims == self.dims and len(shape) == len(self.shape) and all(
            same_size(a, b) for a, b in zip(shape, self.shape))

    def _dims(self, prefix, flat, shape, mask):
        names = []
        for d, size in enumerate(shape):
            if not is_one(size):
                names.append(symbol(f"{prefix}{d}"))
                self.body.masks[names[-1]] = mask
        self.body.unravel.register(flat, shape, tuple(names))
        return names

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
        elif t in LOGICAL:
            acc = self._acc(LOGICAL[t], lambda: b.cast(b.cast(xval(), torch.bool), torch.int32), torch.int32, deps)
            acc.init = "0" if LOGICAL[t] == "max" else "1"
            b.specials[(node, None)] = self._row(node, lambda: b.tmp(f"({acc.name} != 0)", torch.bool), keepdim)
        elif t in ARG:
            vdt = compute_dtype(node_type(x).dtype)
            acc = self._acc(ARG[t], lambda: b.cast(xval(), vdt), vdt, deps)
            position = self._row(node, lambda: Value(acc.index, torch.int64, True), keepdim)
            if t in (aten.max.dim, aten.min.dim):
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

    # --- emitting -------------------------------------------------------------------------
    def emit(self) -> KernelSpec:
        slots, groups = self.emit_body()
        return self.assemble(slots, groups, {"RBLOCK": "rnumel"} if self.persistent else None)

    def assemble(self, slots, groups, covers=None, switch=None) -> KernelSpec:
        header = ["xoffset = tl.program_id(0).to(INDEX_DTYPE) * XBLOCK",
                  "xindex = xoffset + tl.arange(0, XBLOCK)[:, None]",
                  "xmask = xindex < xnumel",
                  "rbase = tl.arange(0, RBLOCK)[None, :].to(INDEX_DTYPE)"]
        constexprs = ["XBLOCK", "RBLOCK"] + (list(switch) if switch else [])
        return assemble(self.body, self.kernel, "reduction", header, slots, groups,
                        {"xnumel": numel(self.row_shape), "rnumel": self.K}, constexprs, covers, switch)

    def emit_body(self):
        """Looped: one loop over the row per accumulator level, and a last one for full-shape
        outputs. Persistent: the whole row is one block (the launcher makes RBLOCK cover it), so
        every level and output is computed in one pass, each load done once."""
        b, persistent = self.body, self.persistent
        for acc in self.accs:
            acc.level = 1 + max((d.level for d in acc.deps), default=-1)
        self._define_dims(self.xdims, self.xindex, self.row_shape)
        if persistent:
            b.line("rindex = rbase")
            b.line("rmask = rindex < rnumel")
            self._define_dims(self.rdims, self.rindex, self.red_shape)
        for level in sorted({a.level for a in self.accs}):
            if persistent:
                for a in (a for a in self.accs if a.level == level):
                    v = b.cast(a.value(), a.dtype)
                    masked = b.tmp(f"tl.where(xmask & rmask, {v.code}, {self._init(a)})", a.dtype).code
                    a.name = b.tmp(self._finish(a, masked), a.dtype).code
                    if a.op in ("argmax", "argmin"):
                        a.index = b.tmp(f"tl.min(tl.where({masked} == {a.name}, rindex.to(tl.int64), "
                                        f"{BIG_INDEX}), 1)[:, None]", torch.int64).code
                continue
            accs = [a for a in self.accs if a.level == level]
            for a in accs:
                a.name = b.fresh("acc")
                b.line(f"{a.name} = tl.full([XBLOCK, RBLOCK], {self._init(a)}, {TL_DTYPES[a.dtype]})")
                if a.op in ("argmax", "argmin"):
                    a.index = a.name + "_index"
                    b.line(f"{a.index} = tl.zeros([XBLOCK, RBLOCK], tl.int64)")
                if a.op == "softmax":
                    a.total = a.name + "_sum"
                    b.line(f"{a.total} = tl.zeros([XBLOCK, RBLOCK], {TL_DTYPES[a.dtype]})")
            self._loop()
            for a in accs:
                v = b.cast(a.value(), a.dtype)
                masked = f"tl.where(xmask & rmask, {v.code}, {self._init(a)})"
                if a.op == "softmax":  # running max; the running sum rescaled to it (NaN spreads)
                    v = b.tmp(masked, a.dtype).code
                    new = b.tmp(f"tl.where(({v} > {a.name}) | ({v} != {v}), {v}, {a.name})", a.dtype).code
                    scale = b.tmp(f'tl.where({new} == float("-inf"), 0.0, tl.exp({a.name} - {new}))', a.dtype).code
                    term = b.tmp(f'tl.where({new} == float("-inf"), 0.0, tl.exp({v} - {new}))', a.dtype).code
                    b.line(f"{a.total} = {a.total} * {scale} + {term}")
                    b.line(f"{a.name} = {new}")
                    continue
                if a.op in ("argmax", "argmin"):  # strict: each lane keeps its first best position
                    m = b.tmp(masked, a.dtype).code
                    better = b.tmp(f"{m} {'>' if a.op == 'argmax' else '<'} {a.name}", torch.bool).code
                    b.line(f"{a.index} = tl.where({better}, rindex.to(tl.int64), {a.index})")
                    b.line(f"{a.name} = tl.where({better}, {m}, {a.name})")
                    continue
                # max/min of floats keep NaN in the lane, as eager does (tl.maximum may drop it)
                keep = "| ({0} != {0})" if a.dtype.is_floating_point and a.op != "sum" else ""
                m = b.tmp(masked, a.dtype).code if keep else masked
                update = {"sum": f"{a.name} + {masked}",
                          "max": f"tl.where(({m} > {a.name}) {keep.format(m)}, {m}, {a.name})",
                          "min": f"tl.where(({m} < {a.name}) {keep.format(m)}, {m}, {a.name})"}[a.op]
                b.line(f"{a.name} = {update}")
            b.pop()
            for a in accs:
                if a.op in ("argmax", "argmin"):
                    best = b.fresh("best")
                    b.line(f"{best} = {self._reduce(a)}({a.name}, 1)[:, None]")
                    b.line(f"{a.index} = tl.min(tl.where({a.name} == {best}, {a.index}, {BIG_INDEX}), 1)[:, None]")
                    b.line(f"{a.name} = {best}")
                elif a.op == "softmax":
                    best = b.fresh("best")
                    b.line(f"{best} = {self._finish(a, a.name)}")
                    b.line(f'{a.total} = tl.sum(tl.where({a.name} == float("-inf"), 0.0, '
                           f'{a.total} * tl.exp({a.name} - {best})), 1)[:, None]')
                    b.line(f"{a.name} = {best}")
                else:
                    b.line(f"{a.name} = {self._finish(a, a.name)}")
        slots, groups = output_slots(self.kernel)
        rows, total = numel(self.row_shape), numel(self.shape)
        row_slots = [(j, s) for j, s in enumerate(slots) if same_size(numel(s.type.shape), rows)]
        full_slots = [(j, s) for j, s in enumerate(slots) if (j, s) not in row_slots]
        for j, s in row_slots:
            v = s.value(b, b.unravel(self.xindex, s.type.shape))
            b.store(j, self.xindex, v, s.type.dtype, "xmask")
        if full_slots:
            if not persistent:
                self._loop()
            for j, s in full_slots:
                if not same_size(numel(s.type.shape), total):
                    raise Unsupported(f"reduction kernel output of shape {list(s.type.shape)}: neither a row "
                                      f"{list(self.row_shape)} nor the reduced shape {list(self.shape)}")
                index, offset = self._full_index(s.type.shape)
                b.store(j, offset, s.value(b, index), s.type.dtype, "xmask & rmask")
            if not persistent:
                b.pop()
        return slots, groups

    def _full_index(self, shape):
        real = lambda s: [as_expr(d) for d in s if not is_one(d)]
        if len(real(shape)) == len(real(self.shape)) and all(
                same_size(a, b) for a, b in zip(real(shape), real(self.shape))):
            it = iter(e for e, d in zip(self.full, self.shape) if not is_one(d))
            index = tuple(sympy.Integer(0) if is_one(d) else next(it) for d in shape)
            return index, ravel(index, shape)
        flat = ravel(self.full, self.shape)
        return split(flat, shape), flat

    def _finish(self, acc, values: str) -> str:
        """Code reducing `values` ([XBLOCK, RBLOCK]) along the row; float max/min give NaN for a
        row holding one, whatever the backend's tl.max does with NaN."""
        out = f"{self._reduce(acc)}({values}, 1)[:, None]"
        if acc.op in ("max", "min", "softmax") and acc.dtype.is_floating_point and acc.init is None:
            return f"tl.where(tl.max(({values} != {values}).to(tl.int32), 1)[:, None] > 0, float(\"nan\"), {out})"
        return out

    @staticmethod
    def _reduce(acc) -> str:
        return {"sum": "tl.sum", "max": "tl.max", "min": "tl.min", "argmax": "tl.max", "argmin": "tl.min",
                "softmax": "tl.max"}[acc.op]

    def _init(self, acc) -> str:
        if acc.init is not None:
            return acc.init
        if acc.op == "sum":
            return "0"
        high = acc.op in ("max", "argmax", "softmax")
        if acc.dtype.is_floating_point:
            return 'float("-inf")' if high else 'float("inf")'
        if acc.dtype is torch.bool:
            return "0" if high else "1"
        info = torch.iinfo(acc.dtype)
        return str(info.min if high else info.max)

    def _loop(self):
        b = self.body
        b.line("for roffset in range(0, rnumel, RBLOCK):")
        b.push()
        b.line("rindex = roffset + rbase")
        b.line("rmask = rindex < rnumel")
        self._define_dims(self.rdims, self.rindex, self.red_shape)

    def _define_dims(self, names, flat, shape):
        exprs = [e for e, d in zip(split(flat, shape), shape) if not is_one(d)]
        for name, e in zip(names, exprs):
            self.body.line(f"{name} = {self.body.code(e)}")


def lower_reduction(kernel, opts: LowerOptions = LowerOptions()) -> KernelSpec:
    """A static row length picks looped or persistent now; a dynamic one gets both bodies under
    `if PERSISTENT:` (a constexpr), and the launcher picks per call from the real row length."""
    looped = ReductionLowering(kernel, opts)
    limit = PERSISTENT_MAX if opts.persistent_max is None else opts.persistent_max
    if looped.K.is_Integer or limit <= 0:
        if persistent_reduction(int(looped.K) if looped.K.is_Integer else None, limit):
            return ReductionLowering(kernel, opts, persistent=True).emit()
        return looped.emit()
    one_pass = ReductionLowering(kernel, opts, persistent=True)
    slots, groups = one_pass.emit_body()
    looped.emit_body()
    body = looped.body
    body.lines = (["    if PERSISTENT:"] + ["    " + line for line in one_pass.body.lines]
                  + ["    else:"] + ["    " + line for line in body.lines])
    body.sizes |= one_pass.body.sizes
    body.strides |= one_pass.body.strides
    return looped.assemble(slots, groups, switch={"PERSISTENT": ["rnumel", limit]})
