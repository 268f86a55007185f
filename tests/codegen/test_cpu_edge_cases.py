"""The native CPU target on the edges the OpInfo sweep's later samples reach: empty tensors,
data-dependent (unbacked) sizes, and ops torch-mlir only lowers in another spelling.

As in test_cpu_native.py, generated code always runs (kernel_choice="generated") with
on_error="raise", and fastc's report says which kernels ran natively.
"""
import pytest
import torch
import torch._dynamo

from fastc.report import REPORTS
from test_cpu_native import GENERATED, assert_matches, check, compiled

pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_reductions_of_empty_tensors_run_as_aten_with_eager_values():
    # torch-mlir divides var's sum by N - correction = -1 (-0.0) where ATen gives NaN.
    def f(x):
        return x.var(0), torch.std_mean(x, 0), (x * 2).sum(0), x.mean(1)
    x = torch.randn(0, 5)
    start = len(REPORTS)
    assert_matches(compiled(f)(x), f(x))
    reasons = [why for r in REPORTS[start:] for _k, why in r.aten_kernels]
    assert reasons and all("empty tensors" in why for why in reasons), reasons


def test_data_dependent_sizes_bind_from_the_kernel_inputs():
    # The mask's size (an unbacked symbol) is no graph input's size: kernels after it read it
    # from their own inputs; a mask that selects nothing runs those kernels as ATen.
    def f(x):
        y = x[x > 1]
        return (y * 2 + 1).sum(), y.exp()
    x = torch.randn(64)
    x[3], x[9] = 2.0, 3.0
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=True):
        start = len(REPORTS)
        fn = compiled(f)
        assert_matches(fn(x), f(x))
        none = torch.zeros(64)
        assert_matches(fn(none), f(none))
    reports = REPORTS[start:]
    assert len(reports) == 1, [r.text() for r in reports]
    assert len(reports[0].generated_kernels) >= 2 and not reports[0].aten_kernels, reports[0].text()


def test_logsumexp_over_several_dims_is_native():
    # Its graph squeezes several dims at once (aten.squeeze.dims), which torch-mlir does not lower.
    check(lambda x: torch.logsumexp(x * 2, (0, 2)), torch.randn(4, 3, 5), kinds=["reduction"])
    check(lambda x: torch.logsumexp(x, (0, 1)) + 1, torch.randn(5, 5), kinds=["reduction"])


def test_ops_no_generator_lowers_are_not_planned():
    # lgamma is in no target's column of the op table: it runs as ATen, and the ops around it in
    # native kernels (none planned and then refused).
    start = len(REPORTS)
    x = torch.rand(6) + 0.5
    f = lambda t: torch.lgamma(t * 2) + 1  # noqa: E731
    assert_matches(compiled(f)(x), f(x))
    reports = REPORTS[start:]
    assert not [k for r in reports for k in r.aten_kernels], [r.text() for r in reports]
    assert len([k for r in reports for k in r.generated_kernels]) == 2, [r.text() for r in reports]


def test_unsupported_ops_name_the_aten_op():
    # Handed a kernel with an op it does not lower (marked by hand: the planner would not plan it),
    # the native target names the op.
    from codegen_cases import mark, trace
    from fastc.codegen.cpu import compile_kernels
    from fastc.ir.kernel_plan import KernelPlan
    gm = mark(trace(lambda t: torch.lgamma(t * 2), torch.rand(6)), "pointwise")
    _, failed = compile_kernels(KernelPlan.of(gm).kernels)
    assert [why for _, why in failed] == ["torch-mlir: no lowering for aten.lgamma"], failed


assert GENERATED["kernel_choice"] == "generated"
