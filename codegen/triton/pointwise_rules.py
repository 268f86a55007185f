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
from .values import TL_DTYPES, Value, compute_dtype

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
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    lo = _get(node, 1, "min")
    hi = _get(node, 2, "max")
    if node.target is aten.clamp_max.default:
        lo, hi = None, node.args[1]
    if lo is not None:
        lo_v = body.cast(body.arg(node, lo, index), dt).code
        x = body.tmp(f"tl.where({x} < {lo_v}, {lo_v}, {x})", dt, _block(body, node, index)).code
    if hi is not None:
        hi_v = body.cast(body.arg(node, hi, index), dt).code
        x = body.tmp(f"tl.where({x} > {hi_v}, {hi_v}, {x})", dt, _block(body, node, index)).code
    return Value(x, dt, _block(body, node, index))


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


def pow_scalar(body, node, index):
    """pow.Tensor_Scalar: small integer and half exponents exactly, others through exp2/log2."""
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    e = node.args[1]
    if isinstance(e, fx.Node):
        raise Unsupported("pow.Tensor_Scalar with a symbolic exponent")
    exact = {0: "({0} * 0 + 1)", 1: "{0}", 2: "({0} * {0})", 3: "({0} * {0} * {0})",
             4: "({0} * {0} * {0} * {0})", -1: "(1.0 / {0})", -2: "(1.0 / ({0} * {0}))",
             0.5: "tl.sqrt({0})", -0.5: "tl.rsqrt({0})"}
    if e in exact:
        return body.tmp(exact[e].format(x), dt, _block(body, node, index))
    if not dt.is_floating_point:
        raise Unsupported(f"pow.Tensor_Scalar of integers with exponent {e}")
    if float(e).is_integer():  # a negative base with an integer exponent: |x|**e, odd e keeps the sign
        magnitude = f"tl.exp2({float(e)!r} * tl.log2(tl.abs({x})))"
        code = f"tl.where({x} < 0, -{magnitude}, {magnitude})" if int(e) % 2 else magnitude
        return body.tmp(code, dt, _block(body, node, index))
    return body.tmp(f"tl.exp2({float(e)!r} * tl.log2({x}))", dt, _block(body, node, index))


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


def isnan(body, node, index):
    x = body.arg(node, node.args[0], index).code
    return body.tmp(f"({x} != {x})", torch.bool, _block(body, node, index))


def isinf(body, node, index):
    x = body.arg(node, node.args[0], index).code
    return body.tmp(f"(tl.abs({x}) == float(\"inf\"))", torch.bool, _block(body, node, index))


def round_half_even(body, node, index):
    """Round half to even (torch.round), from floor."""
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    blk = _block(body, node, index)
    r = body.tmp(f"tl.floor({x} + 0.5)", dt, blk).code
    return body.tmp(f"tl.where(({r} - {x} == 0.5) & ({r} - 2.0 * tl.floor({r} * 0.5) != 0), {r} - 1.0, {r})", dt, blk)


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
    q = floating("({0} / {1})", 2)(body, node, index)
    if mode is None:
        return q
    fmt = "tl.floor({0})" if mode == "floor" else "tl.where({0} < 0, tl.ceil({0}), tl.floor({0}))"
    return body.tmp(fmt.format(q.code), q.dtype, q.block)


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


def pow_scalar_base(body, node, index):
    dt = _out_dtype(node)
    if not dt.is_floating_point:
        raise Unsupported("pow.Scalar with an integer result")
    base = body.value(node.args[0], ()).code
    e = body.cast(body.arg(node, node.args[1], index), dt).code
    return body.tmp(f"tl.exp2({e} * tl.log2(tl.full([], {base}, {TL_DTYPES[dt]})))", dt, _block(body, node, index))


def elu(body, node, index):
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    alpha, scale, input_scale = (body.value(_get(node, i, n, 1.0), ()).code
                                 for i, n in ((1, "alpha"), (2, "scale"), (3, "input_scale")))
    return body.tmp(f"tl.where({x} > 0, {scale} * {x}, {scale} * {alpha} * (tl.exp({x} * {input_scale}) - 1.0))",
                    dt, _block(body, node, index))


def softplus(body, node, index):
    dt = _out_dtype(node)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    beta = body.value(_get(node, 1, "beta", 1.0), ()).code
    threshold = body.value(_get(node, 2, "threshold", 20.0), ()).code
    return body.tmp(f"tl.where({x} * {beta} > {threshold}, {x}, tl.log(1.0 + tl.exp({x} * {beta})) / {beta})",
                    dt, _block(body, node, index))


def floor_divide(body, node, index):
    if not _out_dtype(node).is_floating_point:
        raise Unsupported("floor_divide of integers")
    q = floating("({0} / {1})", 2)(body, node, index)
    return body.tmp(f"tl.floor({q.code})", q.dtype, q.block)


def identity(body, node, index):
    return body.arg(node, node.args[0], index)


def round_decimals(body, node, index):
    dt = _out_dtype(node)
    scale = 10.0 ** node.kwargs.get("decimals", node.args[1] if len(node.args) > 1 else 0)
    x = body.cast(body.arg(node, node.args[0], index), dt).code
    blk = _block(body, node, index)
    y = body.tmp(f"{x} * {scale!r}", dt, blk).code
    r = body.tmp(f"tl.floor({y} + 0.5)", dt, blk).code
    even = body.tmp(f"tl.where(({r} - {y} == 0.5) & ({r} - 2.0 * tl.floor({r} * 0.5) != 0), {r} - 1.0, {r})", dt, blk)
    return body.tmp(f"{even.code} / {scale!r}", dt, blk)


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


def remainder(body, node, index):
    """remainder: the sign of the divisor (Python's %), for floats and integers alike."""
    dt = _out_dtype(node)
    a, b = _operands(body, node, index, 2, dt)
    blk = _block(body, node, index)
    if dt.is_floating_point:
        return body.tmp(f"({a} - tl.floor({a} / {b}) * {b})", dt, blk)
    r = body.tmp(f"({a} % {b})", dt, blk).code  # C or Python sign, depending on the backend
    return body.tmp(f"tl.where(({r} != 0) & (({r} < 0) != ({b} < 0)), {r} + {b}, {r})", dt, blk)


def fmod(body, node, index):
    """fmod: the sign of the dividend (C's %), for floats and integers alike."""
    dt = _out_dtype(node)
    a, b = _operands(body, node, index, 2, dt)
    blk = _block(body, node, index)
    if dt.is_floating_point:
        q = body.tmp(f"{a} / {b}", dt, blk).code
        return body.tmp(f"({a} - {b} * tl.where({q} < 0, tl.ceil({q}), tl.floor({q})))", dt, blk)
    r = body.tmp(f"({a} % {b})", dt, blk).code  # C or Python sign, depending on the backend
    return body.tmp(f"tl.where(({r} != 0) & (({r} < 0) != ({a} < 0)), {r} - {b}, {r})", dt, blk)
