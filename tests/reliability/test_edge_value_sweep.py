"""A property-based sweep (hypothesis): random chains of pointwise ops, optionally closed by a
reduction, over edge values (NaN, +-inf, -0.0, denormals, huge and tiny magnitudes) in float32
and float16, through every CPU-runnable target, against eager PyTorch.

What must hold: NaN where eager has NaN and only there, the same infinities, and finite values
within rounding of eager's (float64 is the judge where eager and fastc may round differently:
a result is accepted when it is as close to the float64 result as eager's, up to a few ulps).
Examples are derandomized, so CI runs the same ones every time; FASTC_SWEEP_EXAMPLES sets how
many per target and dtype (bench/edge_value_sweep.sh runs a long sweep).
"""
from __future__ import annotations

import math
import os

import pytest
import torch
import torch._dynamo
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastc

EXAMPLES = int(os.environ.get("FASTC_SWEEP_EXAMPLES", "30"))

UNARY = {
    "neg": torch.neg, "abs": torch.abs, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
    "tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "sin": torch.sin,
    "floor": torch.floor, "sign": torch.sign, "reciprocal": torch.reciprocal, "erf": torch.erf,
    "gelu": torch.nn.functional.gelu, "silu": torch.nn.functional.silu, "expm1": torch.expm1,
    "log1p": torch.log1p, "rsqrt": torch.rsqrt, "round": torch.round,
}
BINARY = {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div,
    "maximum": torch.maximum, "minimum": torch.minimum, "atan2": torch.atan2,
    "where_gt": lambda a, b: torch.where(a > b, a, b), "fmax": torch.fmax,
}
SCALAR = {
    "mul_1000": lambda a: a * 1000.0, "mul_1e20": lambda a: a * 1e20, "add_1": lambda a: a + 1.0,
    "pow_2": lambda a: a ** 2, "pow_2.5": lambda a: a ** 2.5, "pow_-1": lambda a: a ** -1,
    "clamp": lambda a: torch.clamp(a, -1.0, 1.0), "div_3": lambda a: a / 3.0,
    "rsub_1": lambda a: 1.0 - a, "hardtanh": torch.nn.functional.hardtanh,
}
REDUCTIONS = {
    "none": None, "sum": lambda a: a.sum(-1), "mean": lambda a: a.mean(-1),
    "amax": lambda a: a.amax(-1), "amin": lambda a: a.amin(-1),
    "softmax": lambda a: torch.softmax(a, -1), "max": lambda a: a.max(-1).values,
}

EDGES = {
    torch.float32: [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-40, -1e-40, 3e38, -3e38, 1e-30,
                    1.0, -1.0, 0.5, -2.5, 88.0, -104.0],
    torch.float16: [math.nan, math.inf, -math.inf, 0.0, -0.0, 6e-8, -6e-8, 6e4, -6e4, 1e-4,
                    1.0, -1.0, 0.5, -2.5, 11.0, -17.0],
}

step = st.one_of(
    st.tuples(st.just("unary"), st.sampled_from(sorted(UNARY))),
    st.tuples(st.just("binary"), st.sampled_from(sorted(BINARY))),
    st.tuples(st.just("scalar"), st.sampled_from(sorted(SCALAR))),
)


@st.composite
def cases(draw, dtype):
    rows, cols = draw(st.integers(1, 3)), draw(st.integers(1, 9))
    value = st.one_of(st.sampled_from(EDGES[dtype]),
                      st.floats(-100, 100, width=16 if dtype == torch.float16 else 32))
    x = [draw(value) for _ in range(rows * cols)]
    y = [draw(value) for _ in range(rows * cols)]
    program = tuple(draw(st.lists(step, min_size=1, max_size=4)))
    reduction = draw(st.sampled_from(sorted(REDUCTIONS)))
    return (torch.tensor(x, dtype=dtype).reshape(rows, cols), torch.tensor(y, dtype=dtype).reshape(rows, cols),
            program, reduction)


def make_fn(program, reduction):
    def fn(x, y):
        v = x
        for kind, name in program:
            if kind == "unary":
                v = UNARY[name](v)
            elif kind == "binary":
                v = BINARY[name](v, y)
            else:
                v = SCALAR[name](v)
        r = REDUCTIONS[reduction]
        return v if r is None else r(v)
    return fn


def check_against_eager(actual, expected, truth, dtype, label):
    """NaN and infinities exactly as eager; finite values as close to float64 as eager's, within
    a few ulps (a reduction may add in another order: its tolerance scales with what it adds)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, label
    nan_a, nan_e = torch.isnan(actual), torch.isnan(expected)
    finfo = torch.finfo(dtype)
    truth = truth.double()
    # Where the exact result sits at the edge of the range, eager's own rounding decides between
    # the largest float and infinity (or between a denormal and 0): any of them is right.
    borderline = (truth.abs() > finfo.max * 0.99) & torch.isfinite(truth)
    mismatch_nan = (nan_a != nan_e) & ~borderline
    assert not mismatch_nan.any(), f"{label}: NaN at {mismatch_nan.nonzero().tolist()}\n{actual}\n{expected}"
    inf_e = torch.isinf(expected) & ~borderline
    assert torch.equal(actual[inf_e], expected[inf_e]), f"{label}: infinities differ\n{actual}\n{expected}"
    finite = torch.isfinite(expected) & ~borderline
    a, e, t = actual[finite].double(), expected[finite].double(), truth[finite]
    ulp = finfo.eps * 8
    allowed = (e - t).abs() * 2 + ulp * t.abs() + finfo.tiny * 4
    bad = ((a - t).abs() > allowed) & ((a - e).abs() > ulp * e.abs() + finfo.tiny * 4)
    assert not bad.any(), f"{label}: values differ\nfastc {a[bad].tolist()}\neager {e[bad].tolist()}\nfloat64 {t[bad].tolist()}"


TARGETS = [("aten", {}), ("cpu", {"kernel_choice": "generated"}), ("triton-interpret", {})]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=["f32", "f16"])
@pytest.mark.parametrize("target,extra", TARGETS, ids=[t for t, _ in TARGETS])
def test_edge_values_through_every_target(target, extra, dtype):
    if target == "triton-interpret" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton's interpreter must be chosen before Python starts (TRITON_INTERPRET=1)")

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(cases(dtype))
    def sweep(case):
        x, y, program, reduction = case
        fn = make_fn(program, reduction)
        label = f"{target} {dtype} {program} then {reduction} on x={x.tolist()} y={y.tolist()}"
        expected = fn(x, y)
        truth = fn(x.double(), y.double())
        if os.environ.get("FASTC_SWEEP_LOG"):
            with open(os.environ["FASTC_SWEEP_LOG"], "a") as f:
                f.write(label + "\n")
        torch._dynamo.reset()
        compiled = torch.compile(fn, backend="fastc", options={"target": target, "on_error": "raise", **extra})
        actual = compiled(x, y)
        # The reduction's order is the compiler's to choose: judge it against float64 with the
        # rounding of what it adds.
        check_against_eager(actual, expected, truth, dtype, label)

    sweep()


@pytest.mark.parametrize("target,extra", TARGETS, ids=[t for t, _ in TARGETS])
def test_half_times_a_constant_past_its_range(target, extra):
    """Found by the sweep: eager multiplies float16 by 1e20 in float32 (0 * 1e20 = 0); rounding
    the constant to float16 first gives 0 * inf = NaN."""
    if target == "triton-interpret" and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("Triton's interpreter must be chosen before Python starts (TRITON_INTERPRET=1)")
    torch._dynamo.reset()
    x = torch.tensor([0.0, 1e-4, -0.0, 2.0], dtype=torch.float16)
    fn = SCALAR["mul_1e20"]
    compiled = torch.compile(fn, backend="fastc", options={"target": target, "on_error": "raise", **extra})
    torch.testing.assert_close(compiled(x), fn(x), equal_nan=True)
