"""The op table: what each op is to kernel planning and code generation, and which targets lower it.

One entry per op: its class (pointwise, reduction, matmul, view), for a reduction where its
reduced dims are, and the targets that do not lower it, each with the reason (always, or only
where a condition on the node holds). The planner (passes/kernel_ops.py) puts an op in a kernel
for a target only where the table says that target lowers it; every code generator reads the same
table (codegen/triton: its pointwise rules and reductions; codegen/cpu: its refusals), and
tests/test_op_table.py lowers every op of the table on every target and compares with eager.

An op missing here is never planned: it runs as an ATen call. That includes the pointwise ATen
ops no target lowers (lgamma, digamma, erfinv, igamma, the Bessel functions and orthogonal
polynomials of `special_*`, gcd, lcm, nextafter, angle, frexp, ...).
Purity and effects (may an op be removed, merged or evaluated early) are in op_facts.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx

from .op_facts import VIEW_OPS
from .types import TensorType, node_type

aten = torch.ops.aten

#: The code generation targets ("aten" generates nothing).
TARGETS = ("triton", "triton-interpret", "cpu")
TRITON = ("triton", "triton-interpret")
CPU = ("cpu",)


@dataclass(frozen=True)
class Refusal:
    """`targets` do not lower the op: always, or only for the nodes `when` accepts."""
    targets: tuple[str, ...]
    reason: str
    when: Callable[[fx.Node], bool] | None = None


@dataclass(frozen=True)
class OpEntry:
    kind: str                          # "pointwise", "reduction", "matmul" or "view"
    refusals: tuple[Refusal, ...] = ()
    # Reductions: where the reduced dims are. "all": every dim; ("dims", i): the list argument at
    # position i (or `dim=`; None or empty: every dim); ("dim", i): the one dim at i (None: every
    # dim); ("last", i): the last len(args[i]) dims.
    reduces: object = None


def entry(op) -> OpEntry | None:
    return OP_TABLE.get(op)


def refusal(node: fx.Node, target: str) -> str | None:
    """Why `target` does not lower `node`, or None when the table refuses nothing (an op missing
    from the table included: the planner never puts one in a kernel, and a code generator handed
    one anyway lowers it if it can)."""
    e = OP_TABLE.get(node.target)
    for r in e.refusals if e is not None else ():
        if target in r.targets and (r.when is None or r.when(node)):
            return r.reason
    return None


def reduced_dims(node: fx.Node) -> tuple[int, ...] | None:
    """The dims reduction `node` reduces, sorted and non-negative; () for a 0-d input; None when
    they are not constants (a symbolic dim)."""
    x = node_type(node.args[0])
    rank = len(x.shape) if isinstance(x, TensorType) else 0
    if rank == 0:
        return ()  # dim 0 of a 0-d tensor is the tensor itself: nothing is reduced
    rule = OP_TABLE[node.target].reduces
    if rule == "all":
        return tuple(range(rank))
    kind, index = rule
    arg = node.args[index] if len(node.args) > index else node.kwargs.get("dim")
    if kind == "last":
        return tuple(range(rank - len(arg), rank))
    if arg is not None and not isinstance(arg, (list, tuple)):
        arg = [arg]
    if arg is None or len(arg) == 0:
        return tuple(range(rank))
    if not all(isinstance(d, int) for d in arg):
        return None
    return tuple(sorted({d % rank for d in arg}))


# --- conditions on a node ----------------------------------------------------------------------

def _dtype(node) -> torch.dtype | None:
    t = node_type(node) if isinstance(node, fx.Node) else None
    return t.dtype if isinstance(t, TensorType) else None


def _integer_result(node: fx.Node) -> bool:
    dtype = _dtype(node)
    return dtype is not None and not dtype.is_floating_point


def _float_input(node: fx.Node) -> bool:
    dtype = _dtype(node.args[0])
    return dtype is not None and dtype.is_floating_point


def _rounding_integer_division(node: fx.Node) -> bool:
    mode = node.kwargs.get("rounding_mode", node.args[2] if len(node.args) > 2 else None)
    return mode is not None and _integer_result(node)


def _integer_power_beyond_4(node: fx.Node) -> bool:
    e = node.args[1]
    return _integer_result(node) and not (isinstance(e, int) and 0 <= e <= 4)


def _not_only_a_dtype_cast(node: fx.Node) -> bool:
    return not set(node.kwargs) <= {"dtype"}


# --- the table -----------------------------------------------------------------------------------

def _ops(names: str) -> list:
    """ATen overloads from `name.overload` words (another namespace as `prims.name.overload`)."""
    out = []
    for word in names.split():
        parts = word.split(".")
        namespace = getattr(torch.ops, parts[0]) if len(parts) == 3 else aten
        out.append(getattr(getattr(namespace, parts[-2]), parts[-1]))
    return out


# Elementwise ops (fills included: every element of the result is the same scalar).
POINTWISE = _ops("""
    add.Tensor add.Scalar sub.Tensor sub.Scalar rsub.Scalar rsub.Tensor mul.Tensor mul.Scalar
    div.Tensor div.Scalar true_divide.Tensor div.Tensor_mode div.Scalar_mode floor_divide.default
    remainder.Tensor remainder.Scalar remainder.Scalar_Tensor fmod.Tensor fmod.Scalar
    neg.default positive.default abs.default reciprocal.default square.default
    pow.Tensor_Scalar pow.Scalar pow.Tensor_Tensor addcmul.default addcdiv.default
    lerp.Scalar lerp.Tensor hypot.default ldexp.Tensor
    exp.default exp2.default expm1.default log.default log2.default log10.default log1p.default
    sqrt.default rsqrt.default sin.default cos.default tan.default sinh.default cosh.default
    tanh.default asinh.default acosh.default atanh.default asin.default acos.default atan.default
    atan2.default erf.default erfc.default
    floor.default ceil.default trunc.default frac.default round.default round.decimals
    sign.default sgn.default signbit.default copysign.Tensor copysign.Scalar
    relu.default sigmoid.default silu.default gelu.default leaky_relu.default elu.default
    softplus.default hardsigmoid.default hardswish.default hardtanh.default
    maximum.default minimum.default fmax.default fmin.default
    clamp.default clamp.Tensor clamp_min.default clamp_max.default
    where.self masked_fill.Scalar masked_fill.Tensor nan_to_num.default
    eq.Tensor eq.Scalar ne.Tensor ne.Scalar lt.Tensor lt.Scalar le.Tensor le.Scalar
    gt.Tensor gt.Scalar ge.Tensor ge.Scalar isnan.default isinf.default
    logical_not.default logical_and.default logical_or.default logical_xor.default
    bitwise_not.default bitwise_and.Tensor bitwise_or.Tensor bitwise_xor.Tensor
    bitwise_and.Scalar bitwise_or.Scalar bitwise_xor.Scalar
    bitwise_and.Scalar_Tensor bitwise_or.Scalar_Tensor bitwise_xor.Scalar_Tensor
    __lshift__.Scalar __rshift__.Scalar bitwise_left_shift.Tensor bitwise_right_shift.Tensor
    _to_copy.default prims.convert_element_type.default clone.default copy.default
    lift_fresh_copy.default full.default scalar_tensor.default
    zeros_like.default ones_like.default full_like.default
""")

MATMULS = _ops("mm.default addmm.default bmm.default")

# Reductions, with where their reduced dims are (see OpEntry.reduces).
REDUCTIONS = {
    aten.sum.dim_IntList: ("dims", 1), aten.sum.default: "all",
    aten.mean.dim: ("dims", 1), aten.mean.default: "all",
    aten.amax.default: ("dims", 1), aten.amin.default: ("dims", 1),
    aten.var.correction: ("dims", 1), aten.var_mean.correction: ("dims", 1),
    aten.prod.dim_int: ("dim", 1), aten.prod.default: "all",
    aten.any.dim: ("dim", 1), aten.any.dims: ("dims", 1), aten.any.default: "all",
    aten.all.dim: ("dim", 1), aten.all.dims: ("dims", 1), aten.all.default: "all",
    aten.argmax.default: ("dim", 1), aten.argmin.default: ("dim", 1),
    aten.max.dim: ("dim", 1), aten.min.dim: ("dim", 1),
    aten._softmax.default: ("dim", 1), aten._log_softmax.default: ("dim", 1),
    aten.native_layer_norm.default: ("last", 1),
}

_NO_TRITON_FUNCTION = ("no Triton rule: triton.language has no {} outside libdevice, which Triton's "
                       "interpreter lacks")
_NO_TORCH_MLIR = "torch-mlir (20261001) has no lowering for it"
_TRITON_INT_DIVISION = Refusal(TRITON, "integer division with a rounding mode: no Triton rule",
                               _rounding_integer_division)

_CPU_INTEGER_POWER = Refusal(CPU, "integer powers: torch-mlir (20261001) lowers floating-point ones only",
                             _integer_result)
_CPU_NAN_BLIND = Refusal(CPU, "positions of the max or min of floats: torch-mlir compares with ordered "
                              "predicates, so a NaN never wins where eager returns its position", _float_input)

REFUSALS: dict = {
    # Triton: functions its core language lacks, and integer cases its rules leave out.
    **{op: (Refusal(TRITON, _NO_TRITON_FUNCTION.format(op.__name__.split(".")[0])),)
       for op in _ops("asin.default acos.default atan.default atan2.default")},
    **{op: (Refusal(TRITON, "no Triton rule for shifts"),)
       for op in _ops("__lshift__.Scalar __rshift__.Scalar bitwise_left_shift.Tensor "
                      "bitwise_right_shift.Tensor")},
    aten.div.Tensor_mode: (_TRITON_INT_DIVISION,),
    aten.div.Scalar_mode: (_TRITON_INT_DIVISION,),
    aten.floor_divide.default: (Refusal(TRITON, "floor_divide of integers: no Triton rule (Triton's `//` "
                                                "truncates, eager floors)", _integer_result),),
    aten.pow.Tensor_Scalar: (Refusal(TRITON, "integer powers beyond 4: no Triton rule", _integer_power_beyond_4),
                             _CPU_INTEGER_POWER),
    aten.pow.Tensor_Tensor: (Refusal(TRITON, "integer powers: no Triton rule", _integer_result), _CPU_INTEGER_POWER),
    aten.pow.Scalar: (Refusal(TRITON, "integer powers: no Triton rule", _integer_result), _CPU_INTEGER_POWER),
    # The native CPU target: what torch-mlir does not lower, or lowers unlike eager.
    **{op: (Refusal(CPU, _NO_TORCH_MLIR),) for op in _ops("""
        erfc.default hypot.default positive.default rsub.Tensor true_divide.Tensor
        remainder.Scalar_Tensor copysign.Scalar bitwise_and.Scalar_Tensor bitwise_or.Scalar
        bitwise_or.Scalar_Tensor bitwise_xor.Scalar bitwise_xor.Scalar_Tensor all.dims""")},
    aten.copysign.Tensor: (Refusal(CPU, "torch-mlir (20261001) leaves a torch.constant.int unlegalized"),),
    aten.signbit.default: (Refusal(CPU, "torch-mlir (20261001) leaves a torch.constant.int unlegalized"),),
    aten.fmod.Scalar: (Refusal(CPU, "torch-mlir (20261001) leaves a torch.constant.float unlegalized"),),
    **{op: (_CPU_NAN_BLIND,) for op in _ops("argmax.default argmin.default max.dim min.dim")},
    # Everywhere: a `_to_copy` that changes more than the dtype is no elementwise op.
    aten._to_copy.default: (Refusal(TARGETS, "_to_copy that changes the device, layout or memory format",
                                    _not_only_a_dtype_cast),),
    # Views a kernel cannot express as index arithmetic over the same elements.
    aten.as_strided.default: (Refusal(TARGETS, "a view at arbitrary strides"),),
    aten.diagonal.default: (Refusal(TARGETS, "no index map for diagonal"),),
}

OP_TABLE: dict = {
    **{op: OpEntry("pointwise", REFUSALS.get(op, ())) for op in POINTWISE},
    **{op: OpEntry("matmul", REFUSALS.get(op, ())) for op in MATMULS},
    **{op: OpEntry("reduction", REFUSALS.get(op, ()), reduces) for op, reduces in REDUCTIONS.items()},
    **{op: OpEntry("view", REFUSALS.get(op, ())) for op in VIEW_OPS},
}
