"""The reduction template: rows of XBLOCK per program, each row looped over in RBLOCK steps.

All reductions of a kernel read the same input shape F and reduce the same dims D (inner or
outer: a row is whatever D spans, read at its strides). Composite reductions split into
accumulators: mean and var two-pass (mean first, then squared deviations), softmax and
log_softmax (max, then the sum of exp), layer norm (mean, variance). An accumulator that needs
another's result runs in a later loop; each loop computes all accumulators of its level.
Row-shaped outputs are stored after the loops; F-shaped ones in a last loop. What each op
accumulates is in reduction_ops.py.
"""
from __future__ import annotations

import sympy
import torch

from ..errors import Unsupported
from ..schedule import PERSISTENT_MAX, persistent_reduction
from .body import KernelBody
from .indexing import as_expr, is_one, numel, ravel, same_size, split, symbol
from .options import LowerOptions
from .reduction_ops import BIG_INDEX, REDUCTIONS, Acc, ReductionOps, has_reduction, reduced
from .spec import KernelSpec, assemble, output_slots
from .values import TL_DTYPES

__all__ = ["REDUCTIONS", "ReductionLowering", "has_reduction", "lower_reduction"]

# The combine function of a product's tl.reduce, emitted beside the kernels that use it.
MULTIPLY = "_fastc_multiply"
MULTIPLY_SOURCE = f"@triton.jit\ndef {MULTIPLY}(a, b):\n    return a * b\n"


class ReductionLowering(ReductionOps):
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
                        a.index = b.tmp(f"tl.min(tl.where({self._is_best(a, masked, a.name)}, rindex.to(tl.int64), "
                                        f"{BIG_INDEX}), 1)[:, None]", torch.int64).code
                        if a.exact:
                            a.name = self._value_at(a, masked, f"rindex.to(tl.int64) == {a.index}")
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
                    better = f"{m} {'>' if a.op == 'argmax' else '<'} {a.name}"
                    if a.dtype.is_floating_point:  # NaN beats all but an earlier NaN, as eager
                        better = f"({better}) | (({m} != {m}) & ({a.name} == {a.name}))"
                    better = b.tmp(better, torch.bool).code
                    b.line(f"{a.index} = tl.where({better}, rindex.to(tl.int64), {a.index})")
                    b.line(f"{a.name} = tl.where({better}, {m}, {a.name})")
                    continue
                # max/min of floats keep NaN in the lane, as eager does (tl.maximum may drop it)
                keep = "| ({0} != {0})" if a.dtype.is_floating_point and a.op in ("max", "min") else ""
                m = b.tmp(masked, a.dtype).code if keep else masked
                update = {"sum": f"{a.name} + {masked}", "prod": f"{a.name} * {masked}",
                          "max": f"tl.where(({m} > {a.name}) {keep.format(m)}, {m}, {a.name})",
                          "min": f"tl.where(({m} < {a.name}) {keep.format(m)}, {m}, {a.name})"}[a.op]
                b.line(f"{a.name} = {update}")
            b.pop()
            for a in accs:
                if a.op in ("argmax", "argmin"):
                    best = b.fresh("best")
                    b.line(f"{best} = {self._finish(a, a.name)}")
                    index = b.fresh("best_index")
                    b.line(f"{index} = tl.min(tl.where({self._is_best(a, a.name, best)}, {a.index}, {BIG_INDEX}), 1)[:, None]")
                    if a.exact:  # a lane never updated holds the init at position 0: chosen only
                        # when the whole row is the init, and then every chosen lane agrees
                        best = self._value_at(a, a.name, f"({a.index} == {index}) & {self._is_best(a, a.name, best)}")
                    b.line(f"{a.index} = {index}")
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
        """Code reducing `values` ([XBLOCK, RBLOCK]) along the row; float max/min (argmax/argmin,
        softmax's max too) give NaN for a row holding one, whatever the backend's tl.max does with
        NaN; a product's NaN spreads by itself."""
        if acc.op == "prod":  # no tl.prod: a reduction with a multiplying combine function
            self.body.helpers[MULTIPLY] = MULTIPLY_SOURCE
            return f"tl.reduce({values}, 1, {MULTIPLY})[:, None]"
        out = f"{self._reduce(acc)}({values}, 1)[:, None]"
        if acc.op != "sum" and acc.dtype.is_floating_point and acc.init is None:
            return f"tl.where(tl.max(({values} != {values}).to(tl.int32), 1)[:, None] > 0, float(\"nan\"), {out})"
        return out

    @staticmethod
    def _is_best(acc, values: str, best: str) -> str:
        """Where `values` ([XBLOCK, RBLOCK]) hold the row's best `best` ([XBLOCK, 1]) of argmax /
        argmin: equal to it, or NaN (a row holding a NaN has NaN for best: NaN is both the max
        and the min, as in eager)."""
        if not acc.dtype.is_floating_point:
            return f"({values} == {best})"
        return f"(({values} == {best}) | ({values} != {values}))"

    def _value_at(self, acc, values: str, where: str) -> str:
        """max.dim/min.dim values: the element of `values` where `where` holds (its chosen
        position), bit for bit, so -0.0 and 0.0 come back as eager returns them, not as tl.max
        picks. An integer max of the bits: exact in every backend (a float sum is not: numpy's
        starts at +0.0)."""
        bits, low = {torch.float32: (torch.int32, -2**31), torch.float64: (torch.int64, -2**63)}[acc.dtype]
        picked = self.body.tmp(f"tl.max(tl.where({where}, {values}.to({TL_DTYPES[bits]}, bitcast=True), {low}), 1)"
                               f"[:, None]", bits).code
        return self.body.tmp(f"{picked}.to({TL_DTYPES[acc.dtype]}, bitcast=True)", acc.dtype).code

    @staticmethod
    def _reduce(acc) -> str:
        return {"sum": "tl.sum", "max": "tl.max", "min": "tl.min", "argmax": "tl.max", "argmin": "tl.min",
                "softmax": "tl.max"}[acc.op]

    def _init(self, acc) -> str:
        if acc.init is not None:
            return acc.init
        if acc.op in ("sum", "prod"):
            return "0" if acc.op == "sum" else "1"
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
    body.helpers.update(one_pass.body.helpers)
    return looped.assemble(slots, groups, switch={"PERSISTENT": ["rnumel", limit]})
