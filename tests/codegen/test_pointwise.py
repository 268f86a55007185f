"""Pointwise kernels against eager: ranks, dtypes, broadcasting, strided inputs, the op table."""

import pytest
import torch
import torch.nn.functional as F

from codegen_cases import NEEDS_INTERPRETER, QUIET_INTERPRETER, check, compile_fn

pytestmark = [NEEDS_INTERPRETER, QUIET_INTERPRETER]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def chain(x, y):
    return torch.sigmoid(x * 2.0 + y).relu() - 0.5


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4), (2, 1, 3, 5)], ids=str)
def test_chain_shapes_and_dtypes(shape, dtype):
    x, y = torch.randn(shape, dtype=dtype), torch.randn(shape, dtype=dtype)
    check(chain, (x, y), "pointwise", dtype=dtype)


def test_broadcast_row_column_and_scalar_tensor():
    x, row, col, s = torch.randn(4, 6), torch.randn(6), torch.randn(4, 1), torch.tensor(3.0)
    check(lambda x, r, c, s: (x + r) * c - s, (x, row, col, s), "pointwise")


def test_transposed_and_sliced_inputs():
    base = torch.randn(8, 6)
    xt = base.t()                  # strides (1, 6)
    xs = torch.randn(6, 17)[:, 1:17:2]  # offset storage, step 2
    check(lambda a, b: torch.exp(a) + b, (xt, xs), "pointwise")


def test_views_inside_the_kernel():
    def f(x, y):
        a = (x * 2).permute(1, 0, 2).reshape(3, 8)[:, 1:7]
        b = a.unsqueeze(0).expand(2, 3, 6) + y[:, :, None]
        return b, b.transpose(0, 2)
    check(f, (torch.randn(4, 3, 2), torch.randn(2, 3)), "pointwise")


def test_fused_chain_of_four_ops_is_one_triton_kernel():
    run, info = check(lambda x: torch.tanh(torch.exp(x) * 3.0 + 1.0).neg(), (torch.randn(10),), "pointwise")
    (source,) = info.sources.values()
    assert source.count("@triton.jit") == 1
    assert source.count("tl.store(") == 1 and source.count("tl.load(") == 1


def test_outputs_of_one_kernel_with_different_shapes_but_same_size():
    def f(x):
        a = x.sigmoid()
        return a, (a * 2).view(-1)
    check(f, (torch.randn(3, 4),), "pointwise")


def test_dtype_casts_and_integer_inputs():
    def f(x, i, b):
        y = x.to(torch.float16).to(torch.float32) + i.to(torch.float32)
        return y, (i * 3 + 1), torch.where(b, y, -y), (x > 0) & b, i.abs(), torch.remainder(i, -3), i % 4, torch.fmod(i, 3), torch.fmod(i, -4)
    x = torch.randn(9)
    i = torch.randint(-5, 5, (9,), dtype=torch.int32)
    b = torch.rand(9) > 0.5
    check(f, (x, i, b), "pointwise")


UNARY = {
    "neg": torch.neg, "exp": torch.exp, "log": lambda x: torch.log(x.abs() + 0.1),
    "sqrt": lambda x: torch.sqrt(x.abs()), "rsqrt": lambda x: torch.rsqrt(x.abs() + 0.1),
    "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "gelu": F.gelu, "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"), "silu": lambda x: F.silu(x),
    "abs": torch.abs, "erf": torch.erf, "sin": torch.sin, "cos": torch.cos,
    "reciprocal": lambda x: torch.reciprocal(x + 10), "floor": torch.floor, "ceil": torch.ceil,
    "trunc": torch.trunc, "sign": torch.sign, "exp2": torch.exp2, "log2": lambda x: torch.log2(x.abs() + 1),
    "log1p": lambda x: torch.log1p(x.abs()), "expm1": torch.expm1,
    "pow2": lambda x: x ** 2, "pow3": lambda x: x ** 3, "pow_half": lambda x: x.abs() ** 0.5,
    "pow_frac": lambda x: x.abs() ** 1.7, "pow_neg_int": lambda x: (x + 5) ** -3,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "hardtanh": lambda x: F.hardtanh(x, -0.5, 0.5),
    "clamp_min": lambda x: x.clamp(min=0.1), "clamp_max": lambda x: x.clamp(max=0.1),
    "isnan": lambda x: torch.isnan(x / x.round()), "where_scalar": lambda x: torch.where(x > 0, x, 0.0),
    "rsub": lambda x: 1 - x, "div_scalar": lambda x: x / 3, "sub_alpha": lambda x: torch.sub(x, x * x, alpha=2),
    "add_alpha": lambda x: torch.add(x, x.exp(), alpha=0.5), "remainder": lambda x: torch.remainder(x, 0.7),
    "full": lambda x: x + torch.full((5,), 2.5), "zeros_like": lambda x: torch.zeros_like(x) + x,
    "nan_to_num": lambda x: torch.nan_to_num(torch.log(x)), "round": lambda x: torch.round(x * 2),
    "div_trunc": lambda x: torch.div(x, 0.3, rounding_mode="trunc"),
    "div_floor": lambda x: torch.div(x, 0.3, rounding_mode="floor"),
    "hardsigmoid": lambda x: F.hardsigmoid(x), "hardswish": lambda x: F.hardswish(x),
    "elu": lambda x: F.elu(x, 0.7), "softplus": lambda x: F.softplus(x, 2.0, 3.0),
    "tan": lambda x: torch.tan(x * 0.5), "sinh": torch.sinh, "cosh": torch.cosh, "erfc": torch.erfc,
    "log10": lambda x: torch.log10(x.abs() + 1), "frac": torch.frac, "square": torch.square,
    "pow_scalar_base": lambda x: torch.pow(2.0, x), "fmod_scalar": lambda x: torch.fmod(x, 0.7),
    "round_decimals": lambda x: torch.round(x * 10, decimals=1), "asinh": torch.asinh,
    "acosh": lambda x: torch.acosh(x.abs() + 1.5), "atanh": lambda x: torch.atanh(x.clamp(-0.9, 0.9)),
    "signbit": lambda x: torch.signbit(x * (x.abs() > 0.3)), "masked_fill": lambda x: x.masked_fill(x > 0.5, -2.0),
}
BINARY = {
    "maximum": torch.maximum, "minimum": torch.minimum, "div": lambda a, b: a / (b.abs() + 1),
    "eq": lambda a, b: a == b.round(), "ne": torch.ne, "lt": torch.lt, "le": torch.le, "gt": torch.gt,
    "ge": torch.ge, "logical_and": lambda a, b: torch.logical_and(a > 0, b > 0),
    "logical_or": lambda a, b: torch.logical_or(a > 0, b > 0), "logical_not": lambda a, b: ~(a > b),
    "pow_tensor": lambda a, b: a.abs() ** b, "clamp_tensor": lambda a, b: a.clamp(b - 1, b + 1),
    "where": lambda a, b: torch.where(a > b, a, b * 2),
    "lerp": lambda a, b: torch.lerp(a, b, 0.7), "lerp_tensor": lambda a, b: torch.lerp(a, b, b.sigmoid()),
    "addcmul": lambda a, b: torch.addcmul(a, a, b, value=0.5), "addcdiv": lambda a, b: torch.addcdiv(a, a, b.abs() + 1),
    "floor_divide": lambda a, b: torch.floor_divide(a, b.abs() + 0.5),
    "fmax": lambda a, b: torch.fmax(a, b.masked_fill(b > 1, float("nan"))),
    "fmin": lambda a, b: torch.fmin(a.masked_fill(a > 1, float("nan")), b),
    "hypot": torch.hypot, "copysign": torch.copysign, "ldexp": lambda a, b: torch.ldexp(a, b.round()),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_op_table(name):
    x = torch.randn(5) * 2
    check(UNARY[name], (x,), "pointwise")


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_op_table(name):
    a, b = torch.randn(2, 5), torch.randn(5)
    check(BINARY[name], (a, b), "pointwise")


def test_bf16_casts_round_to_nearest_even_like_eager():
    x = torch.randn(64) * 10
    x[:3] = torch.tensor([-8.47, 1.00390625, -1.01171875])  # ties and near-ties in bf16
    run, info = check(lambda x: (x * 1.0).to(torch.bfloat16), (x,), "pointwise")
    assert torch.equal(run(x), x.to(torch.bfloat16))


def test_one_kernel_serves_several_shapes():
    run, info = check(chain, (torch.randn(4, 6), torch.randn(4, 6)), "pointwise", symbolic=True)
    for shape in [(3, 17), (1, 5), (40, 33)]:
        x, y = torch.randn(shape), torch.randn(shape)
        torch.testing.assert_close(run(x, y), chain(x, y))
    assert len(info.kernels) == 1


def test_int64_indexing_is_chosen_above_int32_sizes():
    from fastc.codegen.triton.launcher import GeneratedKernel
    small = GeneratedKernel._needs_int64([torch.empty(4)], [torch.empty(4)], {"xnumel": 4})
    big = GeneratedKernel._needs_int64([torch.empty(1).expand(2**31)], [], {"xnumel": 2**31})
    assert not small and big


@pytest.mark.parametrize("kind", ["pointwise", "reduction", "matmul"])
def test_int64_indexing_runs(kind, monkeypatch):
    """The same kernels with INDEX_DTYPE=tl.int64 (forced: real >2**31 tensors are too big here)."""
    from fastc.codegen.triton.launcher import GeneratedKernel
    monkeypatch.setattr(GeneratedKernel, "_needs_int64", staticmethod(lambda *a: True))
    fn, args = {"pointwise": (chain, (torch.randn(3, 5), torch.randn(3, 5))),
                "reduction": (lambda x: torch.softmax(x, -1), (torch.randn(3, 5).t(),)),
                "matmul": (lambda a, b: torch.mm(a, b) + 1, (torch.randn(5, 17), torch.randn(17, 3)))}[kind]
    check(fn, args, kind)


def test_generated_source_takes_sizes_and_strides_as_arguments():
    run, info = compile_fn(chain, (torch.randn(4, 6).t(), torch.randn(6, 4)), "pointwise")
    (source,) = info.sources.values()
    assert "in0_st0" in source and "in0_st1" in source and "xnumel" in source
    assert "INDEX_DTYPE: tl.constexpr" in source
