"""Matmul kernels (mm/addmm/bmm + fused epilogue) against eager."""
import pytest
import torch
import torch.nn.functional as F

from codegen_cases import NEEDS_INTERPRETER, QUIET_INTERPRETER, assert_close, check, mark, trace

pytestmark = [NEEDS_INTERPRETER, QUIET_INTERPRETER]


@pytest.mark.parametrize("mnk", [(5, 7, 20), (33, 17, 70), (6, 5, 1)], ids=str)
def test_mm(mnk):
    m, n, k = mnk
    check(torch.mm, (torch.randn(m, k), torch.randn(k, n)), "matmul")


@pytest.mark.parametrize("mnk", [(1, 64, 16), (5, 1, 16)], ids=str)
def test_matrix_vector_products_run_as_aten_with_a_reason(mnk):
    from fastc.codegen.wrapper import compile_planned
    m, n, k = mnk
    a, b = torch.randn(m, k), torch.randn(k, n)
    run, info = compile_planned(mark(trace(torch.mm, a, b), "matmul"), "triton-interpret", strict=True)
    ((_, reason),) = info.fallbacks
    assert "M or N of size 1" in reason and info.kernels == []
    out = run(a, b)
    assert_close(out[0] if isinstance(out, (tuple, list)) else out, a @ b)


def test_linear_with_bias_activation_and_residual():
    def f(x, w, b, r):
        return F.gelu(F.linear(x, w, b)) + r * 0.5
    check(f, (torch.randn(9, 24), torch.randn(13, 24), torch.randn(13), torch.randn(9, 13)), "matmul")


def test_addmm_alpha_beta_and_transposed_operands():
    def f(bias, a, b):
        return torch.addmm(bias, a.t(), b, beta=0.5, alpha=2.0).relu()
    check(f, (torch.randn(6), torch.randn(11, 5), torch.randn(11, 6)), "matmul")


def test_bmm_with_scaling_epilogue():
    check(lambda a, b: torch.bmm(a, b) * 0.125, (torch.randn(3, 5, 18), torch.randn(3, 18, 9)), "matmul")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_accumulates_in_fp32(dtype):
    def f(a, b, bias):
        return torch.sigmoid(torch.mm(a, b) + bias)
    args = (torch.randn(8, 40, dtype=dtype), torch.randn(40, 12, dtype=dtype), torch.randn(12, dtype=dtype))
    check(f, args, "matmul", dtype=dtype)


def test_epilogue_output_is_a_view_of_the_result():
    def f(x, w):
        y = torch.mm(x, w)
        return y.view(2, 3, 4).sigmoid()
    check(f, (torch.randn(6, 10), torch.randn(10, 4)), "matmul")


def test_one_kernel_serves_several_shapes():
    run, info = check(lambda a, b: torch.mm(a, b).relu(), (torch.randn(8, 16), torch.randn(16, 12)),
                      "matmul", symbolic=True)
    for m, k, n in [(3, 5, 7), (40, 33, 20)]:
        a, b = torch.randn(m, k), torch.randn(k, n)
        torch.testing.assert_close(run(a, b)[0] if isinstance(run(a, b), (tuple, list)) else run(a, b),
                                   torch.mm(a, b).relu())
