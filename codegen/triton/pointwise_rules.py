"""Rules of the pointwise op table: each turns an op at an index into a Triton expression.

A rule is `rule(body, node, index) -> Value`; the builders (`arith`, `floating`, `compare`, ...)
make rules from an expression with placeholders {0}, {1} for the operands. Floating values
compute in fp32 (fp16/bf16 inputs are widened on load, results narrowed on store); a cast to
fp16/bf16 inside a kernel rounds through that type, as eager would. Only `triton.language` core
functions are used (no libdevice), so the interpreter runs every rule.
"""
from __future__ import annotations

import math

import torch
import torch.fx as fx

from fastc.ir import TensorType, node_type

from ..errors import Unsupported
from .indexing import is_one
from .values import TL_DTYPES, Value, compute_dtype, literal

aten = torch.ops.aten


def _get(node, pos, name, default=None):
    return node.args[pos] if len(node.args) > pos else node.kwargs.get(name, default)


def _out_dtype(node) -> torch.dtype:
    return compute_dtype(node_type(node).dtype)


def _operands(body, node, index, count, dtype):
    return [body.cast(body.arg(node, a, index), dtype).code for a in node.args[:count]]


def _block(body, node, index):
    return body.is_block(index)


def arith(fmt: str, count: int):
    """All operands promoted to the result dtype, then `fmt` (placeholders {0}, {1}, ...)."""
    def rule(body, node, index):
        dt = _out_dtype(node)
        return body.tmp(fmt.format(*_operands(body, node, index, count, dt)), dt, _block(body, node, index))
    return rule


def floating(fmt: str, count: int = 1):
    """Like arith; an integer result dtype (not expected for these ops) is refused."""
    def rule(body, node, index):
        if not _out_dtype(node).is_floating_point:
            raise Unsupported(f"{node.target} with integer result")
        return arith(fmt, count)(body, node, index)
    return rule


def with_alpha(fmt: str):
    """add/sub/rsub: `{0} op {1} * alpha`."""
    def rule(body, node, index):
        alpha = node.kwargs.get("alpha", 1)
        dt = _out_dtype(node)
        a, b = _operands(body, node, index, 2, dt)
        if alpha != 1:
            b = f"({b} * {body.value(alpha, ()).code})"
        return body.tmp(fmt.format(a, b), dt, _block(body, node, index))
    return rule


def _common_dtype(node) -> torch.dtype:
    dtypes, has_float_literal = [], False
    for a in node.args[:2]:
        t = node_type(a) if isinstance(a, fx.Node) else None
        if isinstance(t, TensorType):
            dtypes.append(t.dtype)
        elif isinstance(a, float):
            has_float_literal = True
    out = dtypes[0]
    for d in dtypes[1:]:
        out = torch.promote_types(out, d)
    if has_float_literal and not out.is_floating_point:
        out = torch.float32
    return compute_dtype(out)


def compare(op: str):
    def rule(body, node, index):
        dt = _common_dtype(node)
        a, b = _operands(body, node, index, 2, dt)
        return body.tmp(f"({a} {op} {b})", torch.bool, _block(body, node, index))
    return rule


def logical(fmt: str, count: int):
    def rule(body, node, index):
        ops = _operands(body, node, index, count, torch.bool)
        return body.tmp(fmt.format(*ops), torch.bool, _block(body, node, index))
    return rule


def where(body, node, index):
    dt = _out_dtype(node)
    cond = body.cast(body.arg(node, node.args[0], index), torch.bool).code
    a, b = (body.cast(body.arg(node, x, index), dt).code for x in node.args[1:3])
    return body.tmp(f"tl.where({cond}, {a}, {b})", dt, _block(body, node, index))


def clamp(body, node, index):
    """clamp/clamp_min/clamp_max/hardtanh: min(max(x, lo), hi); a NaN in x or in a bound gives
    NaN, as eager (x NaN is kept: its comparisons are false)."""
    dt = _out_dtype(node)
    blk = _block(body, node, index)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    lo = _get(node, 1, "min")
    hi = _get(node, 2, "max")
    if node.target is aten.clamp_max.default:
        lo, hi = None, node.args[1]
    if node.target is aten.hardtanh.default:
        lo, hi = _get(node, 1, "min_val", -1.0), _get(node, 2, "max_val", 1.0)
    for bound, op in ((lo, "<"), (hi, ">")):
        if bound is None:
            continue
        v = body.cast(body.arg(node, bound, index), dt).code
        code = f"tl.where({x} {op} {v}, {v}, {x})"
        if isinstance(bound, fx.Node) or (isinstance(bound, float) and math.isnan(bound)):
            code = f"tl.where({v} != {v}, {v}, {code})"  # nested, not `|`: a bound may be 0-d
        x = body.tmp(code, dt, blk).code
    return Value(x, dt, blk)


def to_copy(body, node, index):
    """_to_copy / convert_element_type: a dtype cast, rounding through fp16/bf16."""
    src = body.arg(node, node.args[0], index)
    dtype = node_type(node).dtype
    v = body.cast(src, dtype)
    if dtype in (torch.float16, torch.bfloat16) and v.dtype is not None:
        v = body.tmp(f"{body.narrow(v.code, dtype)}.to(tl.float32)", torch.float32, v.block)
    return v


def full(body, node, index):
    """full / scalar_tensor: a constant of the node's dtype."""
    fill = node.args[1] if node.target is aten.full.default else node.args[0]
    v = body.value(fill, ())
    return body.cast(v, node_type(node).dtype) if v.dtype is not None else \
        body.tmp(f"tl.full([], {v.code}, {TL_DTYPES[_out_dtype(node)]})", _out_dtype(node), False)


# pow.Tensor_Scalar exponents eager computes without std::pow (and 4, exact by multiplying; their
# results agree with C's pow on every edge: (-0.0) ** 3 is -0.0, (-0.0) ** -1 is -inf, ...).
EXACT_POW = {1: "{0}", 2: "({0} * {0})", 3: "({0} * {0} * {0})", 4: "({0} * {0} * {0} * {0})",
             -1: "(1.0 / {0})", -2: "(1.0 / ({0} * {0}))", 0.5: "tl.sqrt({0})", -0.5: "tl.rsqrt({0})"}


def _pow(body, x: str, y, dt, blk) -> Value:
    """C's pow(x, y) (what eager computes) from exp2(y * log2|x|), with its special cases: y == 0
    or x == 1 give 1 (even with a NaN on the other side), (-1) ** ±inf is 1, a finite negative x
    to a non-integer finite y is NaN, and an odd integer y keeps x's sign (-0.0 included), so
    pow(-inf, 2.5) is inf and pow(-0.0, -3) is -inf. `y` is code, or a Python float when the
    exponent is a constant (the tests on it are then made here)."""
    t = lambda code: body.tmp(code, dt, blk).code
    negative = f"({x}.to({_SAME_WIDTH_INT[dt]}, bitcast=True) < 0)"  # the sign bit: -0.0 too
    if not isinstance(y, str):
        e = float(y)
        if math.isnan(e):
            return Value(t(f'tl.where({x} == 1, 1.0, float("nan"))'), dt, blk)
        mag = t(f"tl.exp2({literal(e).code} * tl.log2(tl.abs({x})))")
        if math.isinf(e):  # |x| == 1: 0 * inf in the exponent
            return Value(t(f"tl.where(tl.abs({x}) == 1, 1.0, {mag})"), dt, blk)
        if e.is_integer():
            return Value(t(f"tl.where({negative}, -{mag}, {mag})") if int(e) % 2 else mag, dt, blk)
        return Value(t(f'tl.where(({x} < 0) & ({x} > float("-inf")), float("nan"), {mag})'), dt, blk)
    # A tensor exponent. Nested wheres, not `&`/`|`: one operand may be 0-d and the other a block.
    mag = t(f"tl.exp2({y} * tl.log2(tl.abs({x})))")
    odd = t(f"({y} - 2.0 * tl.floor({y} * 0.5)) == 1.0")  # false for ±inf, NaN and non-integers
    r = t(f"tl.where({odd}, tl.where({negative}, -{mag}, {mag}), {mag})")
    r = t(f'tl.where(tl.floor({y}) != {y}, tl.where({x} < 0, tl.where({x} > float("-inf"), float("nan"), {r}), {r}), {r})')
    r = t(f'tl.where(tl.abs({x}) == 1, tl.where(tl.abs({y}) == float("inf"), 1.0, {r}), {r})')
    return Value(t(f"tl.where({y} == 0, 1.0, tl.where({x} == 1, 1.0, {r}))"), dt, blk)


_SAME_WIDTH_INT = {torch.float32: "tl.int32", torch.float64: "tl.int64"}


def _as_dtype(value, dtype: torch.dtype):
    """A Python number as eager sees it when it meets a `dtype` tensor as a wrapped scalar: fp16
    and bf16 round it (Unsupported where it overflows there: eager raises)."""
    if dtype not in (torch.float16, torch.bfloat16) or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    rounded = torch.tensor(float(value), dtype=dtype).item()
    if math.isinf(rounded) and not math.isinf(value):
        raise Unsupported(f"{value!r} overflows {dtype}")
    return rounded


def pow_scalar(body, node, index):
    """pow.Tensor_Scalar as eager: x ** 0 is 1; sqrt and rsqrt for ±0.5 (not for fp16: there
    eager takes std::pow, so (-inf) ** 0.5 is inf); fp16/bf16 round the exponent to their type;
    small integer exponents by multiplying; others as C's pow."""
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    e = node.args[1]
    if isinstance(e, fx.Node):
        raise Unsupported("pow.Tensor_Scalar with a symbolic exponent")
    if isinstance(e, bool) or not isinstance(e, (int, float)):
        raise Unsupported(f"pow.Tensor_Scalar with exponent {e!r}")
    blk = _block(body, node, index)
    if dt.is_floating_point and e in (0.5, -0.5) and node_type(node).dtype is not torch.float16:
        return body.tmp(EXACT_POW[e].format(x), dt, blk)
    e = _as_dtype(e, node_type(node).dtype)
    if e == 0:  # 1 even for NaN and inf
        return body.tmp(f"tl.full([], 1, {TL_DTYPES[dt]})", dt, False)
    if e in (1, 2, 3, 4) or (dt.is_floating_point and e in (-1, -2)):
        return body.tmp(EXACT_POW[e].format(x), dt, blk)
    if not dt.is_floating_point:
        raise Unsupported(f"pow.Tensor_Scalar of integers with exponent {e}")
    return _pow(body, x, e, dt, blk)


def pow_tensor(body, node, index):
    """pow.Tensor_Tensor of floats, as C's pow."""
    dt = _out_dtype(node)
    if not dt.is_floating_point:
        raise Unsupported("pow.Tensor_Tensor with an integer result")
    x, y = _operands(body, node, index, 2, dt)
    return _pow(body, x, y, dt, _block(body, node, index))


def pow_scalar_base(body, node, index):
    """pow.Scalar: a constant base to a tensor exponent (base 1 gives 1 everywhere, as eager)."""
    dt = _out_dtype(node)
    if not dt.is_floating_point:
        raise Unsupported("pow.Scalar with an integer result")
    base = node.args[0]
    if isinstance(base, fx.Node) or isinstance(base, bool) or not isinstance(base, (int, float)):
        raise Unsupported(f"pow.Scalar with base {base!r}")
    if base == 1:
        return body.tmp(f"tl.full([], 1, {TL_DTYPES[dt]})", dt, False)
    base = float(_as_dtype(base, node_type(node).dtype))
    x = body.tmp(f"tl.full([], {literal(base).code}, {TL_DTYPES[dt]})", dt, False).code
    y = body.cast(body.arg(node, node.args[1], index), dt).code
    return _pow(body, x, y, dt, _block(body, node, index))


def gelu(body, node, index):
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    blk = _block(body, node, index)
    if node.kwargs.get("approximate", "none") == "tanh":
        inner = body.tmp(f"0.7978845608028654 * ({x} + 0.044715 * {x} * {x} * {x})", dt, blk).code
        return body.tmp(f"0.5 * {x} * (1.0 + {TANH.format(inner)})", dt, blk)
    return body.tmp(f"0.5 * {x} * (1.0 + tl.erf({x} * {1 / math.sqrt(2)!r}))", dt, blk)


def leaky_relu(body, node, index):
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    slope = body.value(_get(node, 1, "negative_slope", 0.01), ()).code
    return body.tmp(f"tl.where({x} > 0, {x}, {x} * {slope})", dt, _block(body, node, index))


def copy(body, node, index):
    """aten.copy(dst, src): src broadcast to dst's shape, in dst's dtype."""
    return body.cast(body.arg(node, node.args[1], index), node_type(node).dtype)


# tanh from exp of a non-positive argument (no overflow); no libdevice in the interpreter.
TANH = "(tl.where({0} >= 0, 1.0, -1.0) * (1.0 - tl.exp(-2.0 * tl.abs({0}))) / (1.0 + tl.exp(-2.0 * tl.abs({0}))))"
# NaN propagates from either side. Nested wheres, not `|`: Triton's interpreter cannot `|` a
# scalar (a 0-d input) with a block.
MAX = "tl.where({0} != {0}, {0}, tl.where({0} > {1}, {0}, {1}))"
MIN = "tl.where({0} != {0}, {0}, tl.where({0} < {1}, {0}, {1}))"


def unary(make):
    """A float rule from `make(t, x) -> code`, where `t(code)` names a temporary."""
    def rule(body, node, index):
        dt = _out_dtype(node)
        if not dt.is_floating_point:
            raise Unsupported(f"{node.target} with integer result")
        blk = _block(body, node, index)
        t = lambda code: body.tmp(code, dt, blk).code
        return Value(make(t, body.cast(body.arg(node, node.args[0], index), dt).code), dt, blk)
    return rule


def odd(t, x: str, magnitude: str) -> str:
    """An odd function from its value at |x|: -0.0 and NaN are x itself."""
    return t(f"tl.where({x} < 0, -{magnitude}, tl.where({x} > 0, {magnitude}, {x}))")


def expm1_of(t, x: str) -> str:
    """exp(x) - 1 without cancellation near 0 (Kahan: (u - 1) * x / log(u), u = exp(x)); x where
    u rounds to 1 (so -0.0 stays), -1 where u - 1 does, inf for inf."""
    u = t(f"tl.exp({x})")
    um1 = t(f"{u} - 1.0")
    return t(f'tl.where({u} == 1.0, {x}, tl.where({um1} == -1.0, -1.0, '
             f'tl.where({u} == float("inf"), {u}, {um1} * {x} / tl.log({u}))))')


def log1p_of(t, x: str) -> str:
    """log(1 + x) without losing x near 0 (log(u) * x / (u - 1), u = 1 + x); x where u rounds
    to 1 (so -0.0 stays), inf for inf."""
    u = t(f"1.0 + {x}")
    return t(f'tl.where({u} == 1.0, {x}, tl.where({u} == float("inf"), {u}, tl.log({u}) * ({x} / ({u} - 1.0))))')


def _sinh(t, x):
    e = expm1_of(t, t(f"tl.abs({x})"))
    return odd(t, x, t(f'0.5 * ({e} + tl.where({e} == float("inf"), 1.0, {e} / ({e} + 1.0)))'))


def _tanh(t, x):
    e = expm1_of(t, t(f"-2.0 * tl.abs({x})"))  # in [-1, 0]: no overflow
    return odd(t, x, t(f"-{e} / (2.0 + {e})"))


# Above 2**28, sqrt(x * x ± 1) is x in fp32 and fp64 (and x * x may overflow): log(2x).
_BIG = "268435456.0"


def _asinh(t, x):
    a = t(f"tl.abs({x})")
    small = log1p_of(t, t(f"{a} + {a} * {a} / (1.0 + tl.sqrt(1.0 + {a} * {a}))"))
    return odd(t, x, t(f"tl.where({a} > {_BIG}, tl.log({a}) + 0.6931471805599453, {small})"))


def _acosh(t, x):
    small = t(f"tl.log({x} + tl.sqrt(({x} - 1.0) * ({x} + 1.0)))")
    return t(f'tl.where({x} < 1.0, float("nan"), tl.where({x} > {_BIG}, tl.log({x}) + 0.6931471805599453, {small}))')


def _atanh(t, x):
    return t(f"0.5 * {log1p_of(t, t(f'2.0 * {x} / (1.0 - {x})'))}")


def _hypot(t, a, b):
    """sqrt(a² + b²) without overflow or underflow (m * sqrt(1 + (n / m)²), m the larger of |a|,
    |b|); inf when either is ±inf, even with a NaN on the other side, as eager."""
    a, b = t(f"tl.abs({a})"), t(f"tl.abs({b})")
    m = t(f"tl.where({a} > {b}, {a}, {b})")  # NaN when b is NaN
    n = t(f"tl.where({a} > {b}, {b}, {a})")  # NaN when a is NaN (and b is not)
    q = t(f"{n} / {m}")
    r = t(f"tl.where({m} == 0, {n}, {m} * tl.sqrt(1.0 + {q} * {q}))")
    return t(f'tl.where({a} == float("inf"), {a}, tl.where({b} == float("inf"), {b}, {r}))')


def hypot(body, node, index):
    dt = _out_dtype(node)
    if not dt.is_floating_point:
        raise Unsupported(f"{node.target} with integer result")
    blk = _block(body, node, index)
    a, b = _operands(body, node, index, 2, dt)
    return Value(_hypot(lambda code: body.tmp(code, dt, blk).code, a, b), dt, blk)


# hardsigmoid as eager computes it, min(max(x + 3, 0), 6) / 6, with wheres that keep NaN
# (tl.maximum/tl.minimum need not).
RELU6_OF_X_PLUS_3 = "tl.where({0} + 3.0 < 0, 0.0, tl.where({0} + 3.0 > 6.0, 6.0, {0} + 3.0))"
EXPM1, LOG1P = unary(expm1_of), unary(log1p_of)
SINH, TANH_RULE, ASINH, ACOSH, ATANH = unary(_sinh), unary(_tanh), unary(_asinh), unary(_acosh), unary(_atanh)


def isnan(body, node, index):
    x = body.arg(node, node.args[0], index).code
    return body.tmp(f"({x} != {x})", torch.bool, _block(body, node, index))


def isinf(body, node, index):
    x = body.arg(node, node.args[0], index).code
    return body.tmp(f"(tl.abs({x}) == float(\"inf\"))", torch.bool, _block(body, node, index))


def _round_even(t, x: str) -> str:
    """Round half to even (nearbyint) from floor: x - floor(x) is exact, so no x + 0.5 rounding
    (0.49999997 stays 0, 2**23 + 1 stays); inf and NaN pass; a zero keeps x's sign, as eager."""
    r = t(f"tl.floor({x})")
    d = t(f"{x} - {r}")  # NaN for ±inf: neither test below holds
    up = t(f"tl.where({d} > 0.5, {r} + 1.0, tl.where({d} == 0.5, {r} + ({r} - 2.0 * tl.floor({r} * 0.5)), {r}))")
    return t(f"tl.where({up} == 0, {x} * 0.0, {up})")


def round_half_even(body, node, index):
    """torch.round: half to even; integers unchanged."""
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt)
    if not dt.is_floating_point:
        return x
    blk = _block(body, node, index)
    return Value(_round_even(lambda code: body.tmp(code, dt, blk).code, x.code), dt, blk)


def fill_like(value):
    def rule(body, node, index):
        fill = node.args[1] if value is None else value
        dt = _out_dtype(node)
        return body.tmp(f"tl.full([], {body.value(fill, ()).code}, {TL_DTYPES[dt]})", dt, False)
    return rule


def nan_to_num(body, node, index):
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    info = torch.finfo(node_type(node).dtype)
    nan, posinf, neginf = (_get(node, i, name) for i, name in ((1, "nan"), (2, "posinf"), (3, "neginf")))
    nan = 0.0 if nan is None else nan
    posinf = info.max if posinf is None else posinf
    neginf = info.min if neginf is None else neginf
    lit = lambda v: body.value(float(v), ()).code
    return body.tmp(f"tl.where({x} != {x}, {lit(nan)}, tl.where({x} == float(\"inf\"), {lit(posinf)}, "
                    f"tl.where({x} == float(\"-inf\"), {lit(neginf)}, {x})))", dt, _block(body, node, index))


def div_mode(body, node, index):
    """div.Tensor_mode / div.Scalar_mode of floats: true, truncating or flooring division."""
    mode = node.kwargs.get("rounding_mode", node.args[2] if len(node.args) > 2 else None)
    if not _out_dtype(node).is_floating_point:
        raise Unsupported(f"{node.target} of integers (rounding {mode})")
    if mode == "floor":
        return floor_divide(body, node, index)
    q = floating("({0} / {1})", 2)(body, node, index)
    if mode is None:
        return q
    # fp16/bf16 by a tensor: eager truncates the quotient rounded to the type (0.5 / 0.1001 is
    # 4.995, 5.0 in bf16: 5); by a scalar it truncates the fp32 quotient.
    rounded = _per_op_rounding(body, node, q.dtype, q.block)(q.code)
    return body.tmp(f"tl.where({rounded} < 0, tl.ceil({rounded}), tl.floor({rounded}))", q.dtype, q.block)


def _per_op_rounding(body, node, dt, blk):
    """`r(code) -> variable`: eager's fp16/bf16 arithmetic on its own type (div floor and trunc
    by a tensor) rounds each operation's result to the type; r does that there, and is a plain
    temporary elsewhere (fp32, or a divisor eager treats as a scalar: a number, or one element,
    which it reads as fp32 and divides by in fp32)."""
    t = lambda code: body.tmp(code, dt, blk).code
    dtype, divisor = node_type(node).dtype, node.args[1]
    if dtype not in (torch.float16, torch.bfloat16) or not isinstance(divisor, fx.Node) or \
            not isinstance(node_type(divisor), TensorType) or all(is_one(d) for d in node_type(divisor).shape):
        return t
    return lambda code: t(f"{body.narrow(t(code), dtype)}.to(tl.float32)")


def lerp(body, node, index):
    dt = _out_dtype(node)
    a, b, w = (body.cast(body.arg(node, x, index), dt).code for x in node.args[:3])
    return body.tmp(f"tl.where(tl.abs({w}) < 0.5, {a} + {w} * ({b} - {a}), {b} - ({b} - {a}) * (1.0 - {w}))",
                    dt, _block(body, node, index))


def addc(op):
    def rule(body, node, index):
        dt = _out_dtype(node)
        x, t1, t2 = (body.cast(body.arg(node, a, index), dt).code for a in node.args[:3])
        value = body.value(node.kwargs.get("value", node.args[3] if len(node.args) > 3 else 1), ()).code
        return body.tmp(f"({x} + {value} * ({t1} {op} {t2}))", dt, _block(body, node, index))
    return rule


def elu(body, node, index):
    """elu from expm1 (exact near 0; -0.0 stays -0.0, as eager)."""
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    alpha, scale, input_scale = (body.value(_get(node, i, n, 1.0), ()).code
                                 for i, n in ((1, "alpha"), (2, "scale"), (3, "input_scale")))
    blk = _block(body, node, index)
    t = lambda code: body.tmp(code, dt, blk).code
    negative = expm1_of(t, t(f"{x} * {input_scale}"))
    return body.tmp(f"tl.where({x} > 0, {scale} * {x}, {scale} * {alpha} * {negative})", dt, blk)


def softplus(body, node, index):
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    beta = body.value(_get(node, 1, "beta", 1.0), ()).code
    threshold = body.value(_get(node, 2, "threshold", 20.0), ()).code
    return body.tmp(f"tl.where({x} * {beta} > {threshold}, {x}, tl.log(1.0 + tl.exp({x} * {beta})) / {beta})",
                    dt, _block(body, node, index))


def floor_divide(body, node, index):
    """floor_divide and div(rounding_mode="floor") of floats, as eager's div_floor_floating: the
    quotient (a - fmod(a, b)) / b, one less when the remainder's sign is not b's, rounded to the
    nearest integer (not floor(a / b): 1.0 // 0.1 is 9, -5 // inf is -1, inf // 1 is NaN); b == 0
    gives a / b, a zero quotient the sign of a / b."""
    dt = _out_dtype(node)
    if not dt.is_floating_point:
        raise Unsupported(f"{node.target} of integers")
    a, b = _operands(body, node, index, 2, dt)
    blk = _block(body, node, index)
    t = lambda code: body.tmp(code, dt, blk).code
    r = _per_op_rounding(body, node, dt, blk)
    mod = t(f"({a} % {b})")  # Triton's float % is C's fmod (exact: no rounding)
    div = r(f"{r(f'{a} - {mod}')} / {b}")
    div = t(f"tl.where({mod} != 0, tl.where(({mod} < 0) != ({b} < 0), {r(f'{div} - 1.0')}, {div}), {div})")
    fl = t(f"tl.floor({div})")
    fl = t(f"tl.where({r(f'{div} - {fl}')} > 0.5, {r(f'{fl} + 1.0')}, {fl})")
    q = t(f"{a} / {b}")
    return Value(t(f"tl.where({b} == 0, {q}, tl.where({div} != 0, {fl}, 0.0 * {q}))"), dt, blk)


def identity(body, node, index):
    return body.arg(node, node.args[0], index)


def round_decimals(body, node, index):
    """round(x, decimals): as eager, x * 10**d rounded half to even, over 10**d (x / 10**-d
    rounded, times 10**-d, for negative d)."""
    dt = _out_dtype(node)
    decimals = node.kwargs.get("decimals", node.args[1] if len(node.args) > 1 else 0)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    blk = _block(body, node, index)
    t = lambda code: body.tmp(code, dt, blk).code
    scale = repr(float(10 ** abs(decimals)))
    if decimals >= 0:
        return Value(t(f"{_round_even(t, t(f'{x} * {scale}'))} / {scale}"), dt, blk)
    return Value(t(f"{_round_even(t, t(f'{x} / {scale}'))} * {scale}"), dt, blk)


NEGATIVE = "(({0} < 0) | (({0} == 0) & (1.0 / {0} < 0)))"  # sign bit, -0.0 included


def signbit(body, node, index):
    x = body.cast(body.arg(node, node.args[0], index), torch.float32).code
    return body.tmp(NEGATIVE.format(x), torch.bool, _block(body, node, index))


def masked_fill(body, node, index):
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    mask = body.cast(body.arg(node, node.args[1], index), torch.bool).code
    value = body.cast(body.arg(node, node.args[2], index), dt).code
    return body.tmp(f"tl.where({mask}, {value}, {x})", dt, _block(body, node, index))


def _operands_as_eager_rounds(body, node, index, dt):
    """remainder/fmod operands; a Python number rounded to an fp16/bf16 result's type first, as
    eager does there (its quotient is then not the fp32 one: 7 % 0.7 is 0.698 in fp16)."""
    dtype = node_type(node).dtype
    return [body.cast(body.arg(node, _as_dtype(a, dtype), index), dt).code for a in node.args[:2]]


def remainder(body, node, index):
    """remainder: the sign of the divisor (Python's %), for floats and integers alike; floats as
    eager, from fmod (exact; remainder(5, inf) is 5, remainder(-5, inf) is inf)."""
    dt = _out_dtype(node)
    a, b = _operands_as_eager_rounds(body, node, index, dt)
    blk = _block(body, node, index)
    r = body.tmp(f"({a} % {b})", dt, blk).code  # floats: C's fmod; integers: C or Python sign, by backend
    if dt.is_floating_point:
        return body.tmp(f"tl.where({r} != 0, tl.where(({r} < 0) != ({b} < 0), {r} + {b}, {r}), {r})", dt, blk)
    return body.tmp(f"tl.where(({r} != 0) & (({r} < 0) != ({b} < 0)), {r} + {b}, {r})", dt, blk)


def fmod(body, node, index):
    """fmod: the sign of the dividend (C's %), for floats and integers alike."""
    dt = _out_dtype(node)
    a, b = _operands_as_eager_rounds(body, node, index, dt)
    blk = _block(body, node, index)
    if dt.is_floating_point:  # Triton's float % is C's fmod: exact, fmod(x, inf) is x
        return body.tmp(f"({a} % {b})", dt, blk)
    r = body.tmp(f"({a} % {b})", dt, blk).code  # C or Python sign, depending on the backend
    return body.tmp(f"tl.where(({r} != 0) & (({r} < 0) != ({a} < 0)), {r} - {b}, {r})", dt, blk)
