"""ATen pointwise ops as Triton expressions: `POINTWISE[op](body, node, index) -> Value`.

How each op is computed; the rules and their builders are in pointwise_rules.py. Which ops Triton
lowers is the op table's (fastc.ir.op_table): its pointwise ops less those it says Triton refuses
are exactly the keys here (tests/test_op_table.py checks).
"""
from __future__ import annotations

import torch

from .pointwise_rules import (
    ACOSH, ASINH, ATANH, EXPM1, LOG1P, MAX, MIN, NEGATIVE, RELU6_OF_X_PLUS_3, SINH, TANH_RULE, addc,
    arith, clamp, compare, copy, div_mode, elu, fill_like, floating, floor_divide, fmod, full, gelu,
    hypot, identity, isinf, isnan, leaky_relu, lerp, logical, masked_fill, nan_to_num, pow_scalar,
    pow_scalar_base, pow_tensor, remainder, round_decimals, round_half_even, signbit, softplus,
    to_copy, where, with_alpha,
)

aten = torch.ops.aten
_SIGN = arith("tl.where({0} > 0, 1, tl.where({0} < 0, -1, 0)).to({0}.dtype)", 1)
_COPYSIGN = floating("tl.where(" + NEGATIVE.format("{1}") + ", -tl.abs({0}), tl.abs({0}))", 2)

POINTWISE = {
    # arithmetic
    aten.add.Tensor: with_alpha("({0} + {1})"), aten.add.Scalar: with_alpha("({0} + {1})"),
    aten.sub.Tensor: with_alpha("({0} - {1})"), aten.sub.Scalar: with_alpha("({0} - {1})"),
    aten.rsub.Scalar: with_alpha("({1} - {0})"), aten.rsub.Tensor: with_alpha("({1} - {0})"),
    aten.mul.Tensor: arith("({0} * {1})", 2), aten.mul.Scalar: arith("({0} * {1})", 2),
    aten.div.Tensor: floating("({0} / {1})", 2), aten.div.Scalar: floating("({0} / {1})", 2),
    aten.true_divide.Tensor: floating("({0} / {1})", 2),
    aten.div.Tensor_mode: div_mode, aten.div.Scalar_mode: div_mode,
    aten.floor_divide.default: floor_divide,
    aten.remainder.Tensor: remainder, aten.remainder.Scalar: remainder, aten.remainder.Scalar_Tensor: remainder,
    aten.fmod.Tensor: fmod, aten.fmod.Scalar: fmod,
    aten.neg.default: arith("(-{0})", 1), aten.positive.default: identity,
    aten.abs.default: arith("tl.abs({0})", 1),
    aten.reciprocal.default: floating("(1.0 / {0})"),
    aten.square.default: arith("({0} * {0})", 1),
    aten.pow.Tensor_Scalar: pow_scalar, aten.pow.Scalar: pow_scalar_base,
    aten.pow.Tensor_Tensor: pow_tensor,
    aten.addcmul.default: addc("*"), aten.addcdiv.default: addc("/"),
    aten.lerp.Scalar: lerp, aten.lerp.Tensor: lerp,
    aten.hypot.default: hypot,
    aten.ldexp.Tensor: floating("({0} * tl.exp2({1}))", 2),
    # exponentials, logarithms, trigonometry
    aten.exp.default: floating("tl.exp({0})"), aten.exp2.default: floating("tl.exp2({0})"),
    aten.expm1.default: EXPM1,
    aten.log.default: floating("tl.log({0})"), aten.log2.default: floating("tl.log2({0})"),
    aten.log10.default: floating("(tl.log({0}) * 0.4342944819032518)"),
    aten.log1p.default: LOG1P,
    aten.sqrt.default: floating("tl.sqrt({0})"), aten.rsqrt.default: floating("tl.rsqrt({0})"),
    aten.sin.default: floating("tl.sin({0})"), aten.cos.default: floating("tl.cos({0})"),
    aten.tan.default: floating("(tl.sin({0}) / tl.cos({0}))"),
    aten.sinh.default: SINH,
    aten.cosh.default: floating("((tl.exp({0}) + tl.exp(-{0})) * 0.5)"),
    aten.tanh.default: TANH_RULE,
    aten.asinh.default: ASINH, aten.acosh.default: ACOSH, aten.atanh.default: ATANH,
    aten.erf.default: floating("tl.erf({0})"), aten.erfc.default: floating("(1.0 - tl.erf({0}))"),
    # rounding and sign
    aten.floor.default: arith("tl.floor({0})", 1), aten.ceil.default: arith("tl.ceil({0})", 1),
    aten.trunc.default: floating("tl.where({0} < 0, tl.ceil({0}), tl.floor({0}))"),
    aten.frac.default: floating("({0} - tl.where({0} < 0, tl.ceil({0}), tl.floor({0})))"),
    aten.round.default: round_half_even, aten.round.decimals: round_decimals,
    aten.sign.default: _SIGN, aten.sgn.default: _SIGN, aten.signbit.default: signbit,
    aten.copysign.Tensor: _COPYSIGN, aten.copysign.Scalar: _COPYSIGN,
    # activations
    aten.relu.default: arith("tl.where({0} < 0, 0, {0})", 1),
    aten.sigmoid.default: floating("tl.sigmoid({0})"),
    aten.silu.default: floating("({0} * tl.sigmoid({0}))"),
    aten.gelu.default: gelu, aten.leaky_relu.default: leaky_relu, aten.elu.default: elu,
    aten.softplus.default: softplus,
    aten.hardsigmoid.default: floating(f"({RELU6_OF_X_PLUS_3} / 6.0)"),
    aten.hardswish.default: floating(f"({{0}} * {RELU6_OF_X_PLUS_3} / 6.0)"),
    aten.hardtanh.default: clamp,
    # min, max, clamping, selection
    aten.maximum.default: arith(MAX, 2), aten.minimum.default: arith(MIN, 2),
    aten.fmax.default: floating("tl.where({0} != {0}, {1}, tl.where({1} != {1}, {0}, tl.where({0} > {1}, {0}, {1})))", 2),
    aten.fmin.default: floating("tl.where({0} != {0}, {1}, tl.where({1} != {1}, {0}, tl.where({0} < {1}, {0}, {1})))", 2),
    aten.clamp.default: clamp, aten.clamp.Tensor: clamp, aten.clamp_min.default: clamp,
    aten.clamp_max.default: clamp,
    aten.where.self: where,
    aten.masked_fill.Scalar: masked_fill, aten.masked_fill.Tensor: masked_fill,
    aten.nan_to_num.default: nan_to_num,
    # comparisons and logic
    aten.eq.Tensor: compare("=="), aten.eq.Scalar: compare("=="),
    aten.ne.Tensor: compare("!="), aten.ne.Scalar: compare("!="),
    aten.lt.Tensor: compare("<"), aten.lt.Scalar: compare("<"),
    aten.le.Tensor: compare("<="), aten.le.Scalar: compare("<="),
    aten.gt.Tensor: compare(">"), aten.gt.Scalar: compare(">"),
    aten.ge.Tensor: compare(">="), aten.ge.Scalar: compare(">="),
    aten.isnan.default: isnan, aten.isinf.default: isinf,
    aten.logical_not.default: logical("({0} == 0)", 1),
    aten.logical_and.default: logical("({0} & {1})", 2),
    aten.logical_or.default: logical("({0} | {1})", 2),
    aten.logical_xor.default: logical("({0} ^ {1})", 2),
    aten.bitwise_not.default: arith("(~{0})", 1),
    aten.bitwise_and.Tensor: arith("({0} & {1})", 2), aten.bitwise_or.Tensor: arith("({0} | {1})", 2),
    aten.bitwise_xor.Tensor: arith("({0} ^ {1})", 2),
    aten.bitwise_and.Scalar: arith("({0} & {1})", 2), aten.bitwise_or.Scalar: arith("({0} | {1})", 2),
    aten.bitwise_xor.Scalar: arith("({0} ^ {1})", 2),
    aten.bitwise_and.Scalar_Tensor: arith("({0} & {1})", 2), aten.bitwise_or.Scalar_Tensor: arith("({0} | {1})", 2),
    aten.bitwise_xor.Scalar_Tensor: arith("({0} ^ {1})", 2),
    # casts, copies, constants
    aten._to_copy.default: to_copy, aten.clone.default: to_copy, aten.copy.default: copy,
    aten.lift_fresh_copy.default: identity,
    aten.full.default: full, aten.scalar_tensor.default: full,
    aten.zeros_like.default: fill_like(0), aten.ones_like.default: fill_like(1),
    aten.full_like.default: fill_like(None),
}
if hasattr(torch.ops.prims, "convert_element_type"):
    POINTWISE[torch.ops.prims.convert_element_type.default] = to_copy
