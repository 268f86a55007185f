"""Reduction kernels against eager: inner and outer axes, rows longer than one block, composite
reductions (softmax, log_softmax, layer norm, var_mean), fused producers and consumers."""
import pytest
import torch
import torch.nn.functional as F

from codegen_cases import NEEDS_INTERPRETER, QUIET_INTERPRETER, assert_close, check, mark, trace

pytestmark = [NEEDS_INTERPRETER, QUIET_INTERPRETER]

REDUCTIONS = {
    "sum_inner": lambda x: x.sum(-1),
    "sum_outer": lambda x: x.sum(0),
    "sum_keepdim": lambda x: x.sum(1, keepdim=True),
    "sum_all": lambda x: x.sum(),
    "mean_inner": lambda x: x.mean(-1),
    "mean_outer_keepdim": lambda x: x.mean(0, keepdim=True),
    "amax_inner": lambda x: x.amax(-1),
    "amin_outer": lambda x: x.amin(0),
    "var_mean_inner": lambda x: torch.var_mean(x, dim=-1),
    "var_outer_unbiased": lambda x: x.var(0),
    "softmax": lambda x: torch.softmax(x, -1),
    "softmax_outer": lambda x: torch.softmax(x, 0),
    "log_softmax": lambda x: torch.log_softmax(x, -1),
    "layer_norm": lambda x: F.layer_norm(x, x.shape[-1:]),
    "any_inner": lambda x: (x > 1).any(-1),
    "all_outer": lambda x: (x > -1.5).all(0),
    "argmax_inner": lambda x: x.round().argmax(-1),
    "argmin_outer": lambda x: x.round().argmin(0),
    "argmax_all": lambda x: x.argmax(),
    "max_dim": lambda x: x.round().max(-1),
}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("shape", [(4, 7), (3, 70)], ids=str)
def test_reductions_inner_and_outer(name, shape):
    check(REDUCTIONS[name], (torch.randn(shape),), "reduction")


@pytest.mark.parametrize("name", ["argmax_inner", "argmin_outer", "max_dim", "var_mean_inner"])
def test_looped_reductions(name):
    from fastc.codegen.schedule import Schedule
    from fastc.codegen.triton import lower
    from fastc.ir.kernel_plan import KernelPlan
    fn, x = REDUCTIONS[name], torch.randn(6, 37)
    gm = mark(trace(fn, x), "reduction")
    (kernel,) = KernelPlan.of(gm).kernels
    g = lower(kernel, gm, options={"persistent_max": 0})
    outs = g.run(x, schedule=Schedule(XBLOCK=4, RBLOCK=8))
    assert_close(outs[0] if len(outs) == 1 else tuple(outs), fn(x))


@pytest.mark.parametrize("persistent", [False, True], ids=["looped", "persistent"])
@pytest.mark.parametrize("rblock", [2, 8, 64])
def test_rows_longer_than_one_block(rblock, persistent):
    """Looped: rows go through in blocks of RBLOCK (smaller than the row). Persistent: the
    launcher widens RBLOCK to the whole row, whatever the schedule asks."""
    from fastc.codegen.schedule import Schedule
    from fastc.codegen.triton import lower
    from fastc.ir.kernel_plan import KernelPlan

    def f(x, w, b):
        y = torch.softmax(x * 0.5, -1)
        ln, mean, rstd = torch.ops.aten.native_layer_norm(x, [x.shape[-1]], w, b, 1e-5)
        return y, ln, mean, rstd, x.amax(-1)
    x, w, b = torch.randn(5, 100), torch.randn(100), torch.randn(100)
    gm = mark(trace(f, x, w, b), "reduction")
    (kernel,) = KernelPlan.of(gm).kernels
    generated = lower(kernel, gm, options={"persistent_max": 1024 if persistent else 0})
    assert ("for roffset" in generated.source) != persistent
    outs = generated.run(*[{"x_1": x, "w_1": w, "b_1": b}[n.name] for n in kernel.inputs],
                                  schedule=Schedule(XBLOCK=2, RBLOCK=rblock))
    by_name = dict(zip([n.name for n in kernel.outputs], outs))
    eager = f(x, w, b)
    torch.testing.assert_close(by_name["_softmax"], eager[0])
    ln = by_name.get("native_layer_norm") or tuple(by_name[f"getitem{s}"] for s in ("", "_1", "_2"))
    assert_close(tuple(ln), eager[1:4])
    torch.testing.assert_close(by_name["amax"], eager[4])


def test_layer_norm_three_outputs_with_weight_and_bias():
    def f(x, w, b):
        return torch.ops.aten.native_layer_norm(x, [6], w, b, 1e-5)
    check(f, (torch.randn(2, 3, 6), torch.randn(6), torch.randn(6)), "reduction")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_half_precision_inputs(dtype):
    def f(x):
        return torch.softmax(x, -1), x.sum(-1), F.layer_norm(x, (24,))
    check(f, (torch.randn(3, 24, dtype=dtype),), "reduction", dtype=dtype)


def test_fused_producers_and_consumers():
    def f(x, y):
        h = torch.relu(x + y)                      # producer
        m = h.mean(-1, keepdim=True)
        v = ((h - m) ** 2).mean(-1, keepdim=True)  # reduction of a consumer of a reduction
        return (h - m) * torch.rsqrt(v + 1e-5) * 2.0, torch.sigmoid(m)
    run, info = check(f, (torch.randn(6, 33), torch.randn(33)), "reduction")
    assert next(iter(info.sources.values())).count("@triton.jit") == 1


def test_reduction_of_a_transposed_input_and_a_view():
    def f(x):
        return x.t().sum(-1), x.reshape(2, 3, 5).amax(-1)
    check(f, (torch.randn(6, 5),), "reduction", select=lambda n: n.name in ("t", "sum_1"))


def test_persistent_reduction_loads_each_input_once():
    def f(x):
        return torch.softmax(x, -1), F.layer_norm(x, (16,)), x.sum(-1)
    run, info = check(f, (torch.randn(5, 16),), "reduction")
    (source,) = info.sources.values()
    assert "for roffset" not in source and source.count("tl.load(") == 1


@pytest.mark.parametrize("persistent_max", [0, 1024], ids=["looped", "persistent"])
def test_max_and_min_propagate_nan_like_eager(persistent_max):
    from fastc.codegen.schedule import Schedule
    from fastc.codegen.triton import lower
    from fastc.ir.kernel_plan import KernelPlan

    def f(x):
        return x.amax(-1), x.amin(-1), torch.softmax(x, -1)
    x = torch.randn(4, 20)
    x[1, 7] = float("nan")
    gm = mark(trace(f, x), "reduction")
    (kernel,) = KernelPlan.of(gm).kernels
    outs = lower(kernel, gm, options={"persistent_max": persistent_max}).run(x, schedule=Schedule(XBLOCK=2, RBLOCK=8))
    assert_close(tuple(outs), f(x))


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_online_softmax_with_masked_rows(name):
    """Looped (online) softmax: -inf entries, a fully -inf row, large values, against eager."""
    from fastc.codegen.schedule import Schedule
    from fastc.codegen.triton import lower
    from fastc.ir.kernel_plan import KernelPlan
    f = REDUCTIONS[name]
    x = torch.randn(5, 40) * 30
    x[0, :25] = float("-inf")
    x[1] = float("-inf")
    x[2, 33:] = float("-inf")
    gm = mark(trace(f, x), "reduction")
    (kernel,) = KernelPlan.of(gm).kernels
    g = lower(kernel, gm, options={"persistent_max": 0})
    assert g.source.count("for roffset") == 2  # one online loop, one writing loop
    (out,) = g.run(x, schedule=Schedule(XBLOCK=2, RBLOCK=8))
    torch.testing.assert_close(out, f(x), equal_nan=True)


def test_integer_sum_accumulates_in_int64():
    x = torch.randint(-100, 100, (4, 9), dtype=torch.int32)
    check(lambda x: x.sum(-1), (x,), "reduction")


@pytest.mark.parametrize("name", ["softmax", "layer_norm", "var_mean_inner", "argmax_inner"])
def test_dynamic_rows_and_row_length(name):
    """A dynamic row length: both variants in one kernel, picked per call from the real length
    (rows of 17 fit one block of the limit 64, rows of 130 loop)."""
    from fastc.codegen.triton import lower
    from fastc.ir.kernel_plan import KernelPlan
    f = REDUCTIONS[name]
    gm = mark(trace(f, torch.randn(4, 7), symbolic=True), "reduction")
    (kernel,) = KernelPlan.of(gm).kernels
    g = lower(kernel, gm, options={"persistent_max": 64})
    assert "if PERSISTENT:" in g.source and g.source.count("@triton.jit") == 1
    assert g.spec.switch == {"PERSISTENT": ["rnumel", 64]}
    for shape in [(3, 17), (9, 130)]:
        x = torch.randn(shape)
        outs = g.run(x)
        assert_close(outs[0] if len(outs) == 1 else tuple(outs), f(x))
