"""Index expressions as sympy: ravel/unravel over shapes, broadcasting, and printing as code.

Kernels compute every value at a tuple of sympy index expressions, one per dimension, over
iteration symbols (x0, r0, ...) that the kernel defines as Triton tensors. Sizes are ints or
sympy expressions over the graph's size symbols (s0, ...), which become kernel arguments.
"""
from __future__ import annotations

import sympy
from torch.utils._sympy.functions import CeilDiv, FloorDiv, ModularIndexing, PythonMod

Index = tuple  # of sympy expressions, one per dimension


def symbol(name: str) -> sympy.Symbol:
    return sympy.Symbol(name, integer=True, nonnegative=True)


def as_expr(x) -> sympy.Expr:
    return sympy.Integer(x) if isinstance(x, int) else x


def is_one(size) -> bool:
    return as_expr(size) == 1


def same_size(a, b) -> bool:
    return sympy.simplify(as_expr(a) - as_expr(b)) == 0


def numel(shape) -> sympy.Expr:
    return sympy.Mul(*[as_expr(d) for d in shape]) if shape else sympy.Integer(1)


def contiguous_strides(shape) -> list[sympy.Expr]:
    strides, acc = [], sympy.Integer(1)
    for d in reversed(shape):
        strides.append(acc)
        acc = acc * as_expr(d)
    return strides[::-1]


def ravel(index: Index, shape) -> sympy.Expr:
    """The row-major flat position of `index` in `shape` (`flat` itself when `index` is
    `split(flat, shape)`, which sympy would not simplify back)."""
    index = tuple(as_expr(i) for i in index)
    for i in index:
        if isinstance(i, (FloorDiv, ModularIndexing)):
            if split(i.args[0], shape) == index:
                return i.args[0]
            break
    return sum((i * s for i, s, d in zip(index, contiguous_strides(shape), shape) if not is_one(d)),
               sympy.Integer(0))


class Unravel:
    """Splits flat symbols into per-dimension indices; named dimension symbols can be registered
    for a (flat symbol, shape) so that every unravel of it gives the same symbols."""

    def __init__(self):
        self.named: dict[tuple, tuple] = {}

    def register(self, flat, shape, names: tuple) -> None:
        self.named[(flat, _key(shape))] = names

    def __call__(self, flat, shape) -> Index:
        if (flat, _key(shape)) in self.named:
            names = iter(self.named[(flat, _key(shape))])
            return tuple(sympy.Integer(0) if is_one(d) else next(names) for d in shape)
        return split(flat, shape)


def split(flat, shape) -> Index:
    """Row-major indices of flat position `flat` in `shape` (size-1 dimensions get 0)."""
    strides = contiguous_strides(shape)
    real = [k for k, d in enumerate(shape) if not is_one(d)]
    out = []
    for k, d in enumerate(shape):
        if is_one(d):
            out.append(sympy.Integer(0))
        elif k == real[0]:
            out.append(FloorDiv(flat, strides[k]) if strides[k] != 1 else flat)
        else:
            out.append(ModularIndexing(flat, strides[k], as_expr(d)))
    return tuple(out)


def _key(shape):
    return tuple(as_expr(d) for d in shape if not is_one(d))


def broadcast(index: Index, out_shape, in_shape) -> Index:
    """The index into an operand of shape `in_shape` broadcast to `out_shape`."""
    lead = len(out_shape) - len(in_shape)
    return tuple(sympy.Integer(0) if is_one(d) and not is_one(out_shape[lead + k]) else index[lead + k]
                 for k, d in enumerate(in_shape))


def to_code(expr, host: bool = False) -> str:
    """Prints an index/size expression as Triton (or, with host=True, plain Python) code."""
    expr = as_expr(expr)
    if isinstance(expr, (sympy.Integer, int)):
        return str(int(expr))
    if isinstance(expr, sympy.Symbol):
        return expr.name
    if isinstance(expr, (sympy.Float, sympy.Rational)):
        return repr(float(expr))
    if isinstance(expr, sympy.Add):
        terms = [to_code(a, host) for a in sympy.Add.make_args(expr)]
        return "(" + " + ".join(terms) + ")"
    if isinstance(expr, sympy.Mul):
        coeff, rest = expr.as_coeff_Mul()
        factors = [to_code(a, host) for a in sympy.Mul.make_args(rest)]
        if coeff != 1:
            factors.insert(0, f"({to_code(coeff, host)})" if coeff < 0 else to_code(coeff, host))
        return "(" + " * ".join(factors) + ")"
    if isinstance(expr, sympy.Pow) and expr.exp.is_Integer and expr.exp > 0:
        return "(" + " * ".join([to_code(expr.base, host)] * int(expr.exp)) + ")"
    if isinstance(expr, FloorDiv):
        return f"({to_code(expr.args[0], host)} // {to_code(expr.args[1], host)})"
    if isinstance(expr, CeilDiv):
        a, b = (to_code(x, host) for x in expr.args)
        return f"(({a} + {b} - 1) // {b})"
    if isinstance(expr, ModularIndexing):
        x, div, mod = (to_code(a, host) for a in expr.args)
        inner = x if expr.args[1] == 1 else f"({x} // {div})"
        return f"({inner} % {mod})"
    if isinstance(expr, (PythonMod, sympy.Mod)):
        return f"({to_code(expr.args[0], host)} % {to_code(expr.args[1], host)})"
    if isinstance(expr, (sympy.Max, sympy.Min)):
        name = ("max" if isinstance(expr, sympy.Max) else "min") if host else \
            ("tl.maximum" if isinstance(expr, sympy.Max) else "tl.minimum")
        args = [to_code(a, host) for a in expr.args]
        out = args[0]
        for a in args[1:]:
            out = f"{name}({out}, {a})"
        return out
    raise NotImplementedError(f"cannot print index expression {expr} ({type(expr).__name__})")
