"""Triton lowering against eager on NaN, ±inf, -0.0 and other edges: argmax/argmin and max/min
reductions with NaN, pow's special cases (f32, f16, bf16; tensor-scalar, tensor-tensor,
scalar-tensor), and pointwise rules (clamp, remainder/fmod, floor/trunc division, rounding,
hypot, expm1/log1p and the functions built on them, hardsigmoid, maximum/minimum, where)."""
import pytest
import torch
import torch.nn.functional as F

from codegen_cases import NEEDS_INTERPRETER, QUIET_INTERPRETER, assert_close, check, compile_offline, mark, trace

pytestmark = [NEEDS_INTERPRETER, QUIET_INTERPRETER]
inf, nan = float("inf"), float("nan")

# Unary edges; 0.49999997 and 2**23 + 1 break round-by-floor(x + 0.5), 1e30 overflows x * x.
EDGES = [nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -3.0, 2.5, -2.5,
         1e-10, -1e-10, 1e30, -1e30, 0.49999997, 8388609.0, 7.0, 0.1, -100.0]
# Operands of binary ops, every pair (eager's vectorized fmod gives NaN for quotients past
# ~1e38, the scalar one and C's fmod do not: no 1e30 against 1e-10 here).
PAIRS = [nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 3.0, -2.5, 7.0, 0.1, 1e10]


def edges(dtype=torch.float32):
    return torch.tensor(EDGES, dtype=torch.float32).to(dtype)


def grid(dtype=torch.float32):
    v = torch.tensor(PAIRS, dtype=torch.float32).to(dtype)
    return v[:, None].expand(len(PAIRS), len(PAIRS)).contiguous(), v[None, :].expand(len(PAIRS), len(PAIRS)).contiguous()


def same_zero_signs(actual, expected):
    """Where both are zero, the same sign (assert_close takes -0.0 for 0.0)."""
    for a, e in zip(actual if isinstance(actual, tuple) else (actual,),
                    expected if isinstance(expected, tuple) else (expected,)):
        if not a.dtype.is_floating_point:
            continue
        zeros = (a == 0) & (e == 0)
        assert torch.equal(torch.signbit(a[zeros]), torch.signbit(e[zeros])), (a, e)


def check_exact(fn, args, dtype=torch.float32):
    run, info = check(fn, args, "pointwise", dtype=dtype)
    same_zero_signs(run(*args), fn(*args))


# --- argmax/argmin and max/min reductions -----------------------------------------------------
def nan_rows():
    """Rows of 20: NaN after inf, NaN in a later block than the max, two NaNs, all NaN, all -inf,
    all inf, -0.0/0.0 ties both ways, only -inf and NaN, plain values."""
    x = torch.randn(10, 20, generator=torch.Generator().manual_seed(0))
    x[0, 3], x[0, 9] = inf, nan
    x[1, 2], x[1, 17] = 50.0, nan
    x[2, 5], x[2, 6], x[2, 14] = nan, -inf, nan
    x[3] = nan
    x[4] = -inf
    x[5] = inf
    x[6] = 0.0
    x[6, 0::3] = -0.0
    x[7] = -0.0
    x[7, 0], x[7, 13] = 0.0, 0.0
    x[8] = -inf
    x[8, 11] = nan
    x[9, 7] = -inf
    return x


ARG_REDUCTIONS = {
    "argmax": lambda x: x.argmax(-1), "argmin": lambda x: x.argmin(-1),
    "argmax_outer": lambda x: x.argmax(0), "argmin_outer": lambda x: x.argmin(0),
    "argmax_all": lambda x: x.argmax(), "argmin_all": lambda x: x.argmin(),
    "max_dim": lambda x: tuple(x.max(-1)), "min_dim": lambda x: tuple(x.min(-1)),
    "max_dim_keepdim": lambda x: tuple(x.max(-1, keepdim=True)), "min_dim_outer": lambda x: tuple(x.min(0)),
    "amax_amin": lambda x: (x.amax(-1), x.amin(-1)), "amax_amin_outer": lambda x: (x.amax(0), x.amin(0)),
}


def run_reduction(fn, x, persistent_max, rblock=4):
    from fastc.codegen.schedule import Schedule
    from fastc.codegen.triton import lower
    from fastc.ir.kernel_plan import KernelPlan
    gm = mark(trace(fn, x), "reduction")
    (kernel,) = KernelPlan.of(gm).kernels
    g = lower(kernel, gm, options={"persistent_max": persistent_max})
    assert ("for roffset" in g.source) == (persistent_max == 0)
    return tuple(g.run(x, schedule=Schedule(XBLOCK=2, RBLOCK=rblock)))


@pytest.mark.parametrize("persistent_max", [0, 1024], ids=["looped", "persistent"])
@pytest.mark.parametrize("name", sorted(ARG_REDUCTIONS))
def test_arg_and_max_reductions_with_nan_inf_and_signed_zeros(name, persistent_max):
    """NaN is both the max and the min (its first position wins), ties go to the first
    position, max.dim/min.dim values are the element at that position (-0.0 kept). Looped rows
    go through in blocks of 4, so the NaN, the inf and the ties fall in different lanes."""
    fn, x = ARG_REDUCTIONS[name], nan_rows()
    expected = fn(x)
    actual = run_reduction(fn, x, persistent_max)
    expected = tuple(expected) if isinstance(expected, tuple) else (expected,)
    assert_close(actual, expected)
    if name.startswith(("max_dim", "min_dim")):  # (amax of -0.0 and 0.0: eager's pick varies)
        same_zero_signs(actual, expected)


@pytest.mark.parametrize("name", ["argmax", "argmin", "max_dim", "min_dim"])
def test_arg_reductions_with_nan_through_the_planned_kernel(name):
    check(ARG_REDUCTIONS[name], (nan_rows(),), "reduction")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_argmax_with_nan_in_half_precision(dtype):
    x = nan_rows().to(dtype)
    check(lambda x: (x.argmax(-1), x.argmin(-1), x.max(-1).values, x.amin(-1)), (x,), "reduction", dtype=dtype)


def test_integer_argmax_and_max_dim_unchanged():
    x = torch.randint(-3, 3, (5, 11), dtype=torch.int32)
    check(lambda x: (x.argmax(-1), tuple(x.max(-1)), x.argmin(-1)), (x,), "reduction")


def test_dynamic_row_length_argmax_with_nan():
    from fastc.codegen.triton import lower
    from fastc.ir.kernel_plan import KernelPlan
    f = ARG_REDUCTIONS["max_dim"]
    gm = mark(trace(f, torch.randn(4, 7), symbolic=True), "reduction")
    (kernel,) = KernelPlan.of(gm).kernels
    g = lower(kernel, gm, options={"persistent_max": 16})
    for x in [nan_rows()[:, :13], torch.cat([nan_rows()] * 2, 1)]:  # persistent, then looped
        outs = g.run(x)
        assert_close(tuple(outs), f(x))
        same_zero_signs(outs[0], f(x)[0])


# --- pow --------------------------------------------------------------------------------------
POW_EXPONENTS = [0, 1, 2, 3, 4, -1, -2, -3, 0.5, -0.5, 2.5, -2.5, 7, 1.5, 0.25, 1.7, inf, -inf, nan]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("e", POW_EXPONENTS, ids=str)
def test_pow_tensor_scalar_edges(e, dtype):
    """pow(-inf, 2.5) is inf, pow(-2, 3) -8, pow(-2, 2.5) NaN, pow(0, -1) inf, pow(-0.0, -3)
    -inf, pow(NaN, 0) 1; fp16 takes std::pow for ±0.5 (pow(-inf, 0.5) is inf), fp16/bf16 round
    the exponent to their type."""
    check_exact(lambda x: x ** e, (edges(dtype),), dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_pow_tensor_tensor_edges(dtype):
    """Every pair: 1 ** NaN is 1, NaN ** 0 is 1, (-1) ** ±inf is 1, (-inf) ** 3 -inf, ..."""
    a, b = grid(dtype)
    check_exact(torch.pow, (a, b), dtype)


@pytest.mark.parametrize("base", [2.0, -2.0, 1.0, 0.0, -0.0, 0.5, -0.5, inf, -inf, nan, 2.3, 3], ids=str)
def test_pow_scalar_base_edges(base):
    check_exact(lambda x: torch.pow(base, x), (edges(),))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_pow_scalar_base_rounds_the_base_in_half_precision(dtype):
    x = torch.linspace(-4, 9, 40).to(dtype)
    run, info = check(lambda x: torch.pow(2.3, x), (x,), "pointwise", dtype=dtype)
    assert torch.equal(run(x), torch.pow(2.3, x))


def test_pow_mixed_with_broadcast_and_a_0d_exponent():
    x, e = torch.tensor([[-inf, -2.0, -0.0, 0.0, 4.0]]), torch.tensor(3.0)
    check_exact(lambda x, e: (torch.pow(x, e), torch.pow(e, x)), (x, e))
    check_exact(lambda x: torch.pow(x.t(), x), (x,))


def test_integer_pow():
    i = torch.arange(-4, 5, dtype=torch.int32)
    check(lambda i: (i ** 0, i ** 1, i ** 2, i ** 3, i ** 2.5), (i,), "pointwise")


# --- other pointwise rules --------------------------------------------------------------------
UNARY = {
    "clamp_nan_min": lambda x: x.clamp(min=nan), "clamp_nan_max": lambda x: x.clamp(max=nan),
    "clamp": lambda x: x.clamp(-1.5, 1.5), "hardtanh": lambda x: F.hardtanh(x, -0.5, 0.5),
    "remainder": lambda x: torch.remainder(x, 0.7), "remainder_neg": lambda x: torch.remainder(x, -0.7),
    "remainder_inf": lambda x: torch.remainder(x, inf), "remainder_ninf": lambda x: torch.remainder(x, -inf),
    "fmod": lambda x: torch.fmod(x, -0.7), "fmod_inf": lambda x: torch.fmod(x, inf),
    "div_floor": lambda x: torch.div(x, 0.1, rounding_mode="floor"),
    "div_trunc": lambda x: torch.div(x, 0.1, rounding_mode="trunc"),
    "floor_divide": lambda x: torch.floor_divide(x, -0.1),
    "round": torch.round, "round_decimals": lambda x: torch.round(x, decimals=1),
    "round_neg_decimals": lambda x: torch.round(x * 100, decimals=-2),
    "expm1": torch.expm1, "log1p": torch.log1p, "sinh": torch.sinh, "cosh": torch.cosh, "tanh": torch.tanh,
    "asinh": torch.asinh, "acosh": torch.acosh, "atanh": torch.atanh, "elu": lambda x: F.elu(x, 0.7),
    "hardsigmoid": lambda x: F.hardsigmoid(x), "hardswish": lambda x: F.hardswish(x),
    "exp": torch.exp, "log": torch.log, "log2": torch.log2, "exp2": torch.exp2, "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt, "reciprocal": torch.reciprocal, "sign": torch.sign, "signbit": torch.signbit,
    "relu": torch.relu, "where": lambda x: torch.where(x > 0, x, x * -2.0), "nan_to_num": torch.nan_to_num,
    "trunc": torch.trunc, "frac": torch.frac, "sigmoid": torch.sigmoid, "erf": torch.erf,
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_edges(name):
    check_exact(UNARY[name], (edges(),))


BINARY = {
    "maximum": torch.maximum, "minimum": torch.minimum, "fmax": torch.fmax, "fmin": torch.fmin,
    "remainder": torch.remainder, "fmod": torch.fmod, "floor_divide": torch.floor_divide,
    "div_floor": lambda a, b: torch.div(a, b, rounding_mode="floor"),
    "div_trunc": lambda a, b: torch.div(a, b, rounding_mode="trunc"), "hypot": torch.hypot,
    "clamp_tensor": lambda a, b: a.clamp(b, b + 1), "clamp_min_tensor": lambda a, b: a.clamp(min=b),
    "clamp_max_tensor": lambda a, b: a.clamp(max=b), "where": lambda a, b: torch.where(a > b, a, b),
    "copysign": torch.copysign,
}
# Ties of 0.0 and -0.0: eager's answer depends on its vectorization (and so on the size).
SIGNED_ZERO_TIES = {"maximum", "minimum", "fmax", "fmin", "clamp_tensor", "clamp_min_tensor", "clamp_max_tensor"}


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_edges(name):
    a, b = grid()
    if name in SIGNED_ZERO_TIES:
        check(BINARY[name], (a, b), "pointwise")
    else:
        check_exact(BINARY[name], (a, b))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_division_and_remainder_round_like_eager_in_half_precision(dtype):
    """By a tensor, eager's fp16/bf16 floor and trunc division round each step to the type
    (bf16 0.5 / 0.1001 truncates to 5, not 4); by a number they divide in fp32. remainder and
    fmod round the number to the type first (fp16 7 % 0.7 is 0.698)."""
    torch.manual_seed(0)
    a, b = (torch.randn(200) * 10).to(dtype), torch.randn(200).to(dtype)
    a[:3], b[:3] = torch.tensor([0.5, 1.0, -2.5]), 0.1

    def f(a, b):
        return (torch.div(a, b, rounding_mode="trunc"), torch.div(a, b, rounding_mode="floor"),
                torch.floor_divide(a, b), torch.div(a, 0.1, rounding_mode="trunc"),
                torch.div(a, 0.1, rounding_mode="floor"), torch.div(a, b[:1], rounding_mode="floor"),
                torch.remainder(a, 0.7), torch.fmod(a, 0.7), torch.remainder(a, b))
    run, info = check(f, (a, b), "pointwise", dtype=dtype)
    for got, want in zip(run(a, b), f(a, b)):
        torch.testing.assert_close(got, want, rtol=0, atol=0, equal_nan=True)


def test_clamp_with_nan_tensor_bounds_and_a_0d_bound():
    x, lo = torch.tensor([[nan, 1.0, -3.0, 0.5, 2.0]]), torch.tensor([[0.0, nan, -1.0, 1.0, nan]])
    check(lambda x, lo, s: (x.clamp(lo, lo + 1), x.clamp(min=s), x.clamp(max=s), x.clamp(s, lo)),
          (x, lo, torch.tensor(nan)), "pointwise")


# --- the same rules through Triton's real compiler --------------------------------------------
GPU_CASES = {
    "pow_and_math": (lambda x, y, s: (x ** 2.5, x ** 7, x ** inf, x ** 0, torch.pow(x, y), torch.pow(s, x),
                                      torch.pow(2.3, x), torch.expm1(x), torch.log1p(x), torch.tanh(x), torch.asinh(x),
                                      torch.acosh(x), torch.hypot(x, y), torch.round(x), x.clamp(min=s),
                                      torch.remainder(x, inf), torch.floor_divide(x, y)),
                     (torch.randn(4, 6), torch.randn(6), torch.tensor(0.5)), "pointwise", {}),
    "division_bf16": (lambda a, b: (torch.div(a, b, rounding_mode="trunc"), torch.div(a, b, rounding_mode="floor"),
                                    torch.remainder(a, 0.7), a ** 0.5),
                      (torch.randn(4, 6, dtype=torch.bfloat16), torch.randn(4, 6, dtype=torch.bfloat16)), "pointwise", {}),
    "max_dim_looped": (lambda x: (tuple(x.max(-1)), x.argmin(-1)), (torch.randn(6, 37),), "reduction",
                       {"persistent_max": 0}),
    "max_dim_dynamic_f64": (lambda x: (tuple(x.min(-1)), x.argmax(-1)), (torch.randn(6, 37, dtype=torch.float64),),
                            "reduction", {"symbolic": True}),
}


@pytest.fixture(scope="module")
def compiled_for_gpu(tmp_path_factory):
    """The GPU_CASES lowered for target "triton" and compiled to cubin for sm_90 in a child
    process without the interpreter (as tests/codegen/test_gpu_compile.py does)."""
    return compile_offline(GPU_CASES, tmp_path_factory.mktemp("offline"), None)


@pytest.mark.parametrize("case", sorted(GPU_CASES))
def test_edge_rules_compile_for_sm90(case, compiled_for_gpu):
    assert compiled_for_gpu[case] == "ok", compiled_for_gpu[case]
