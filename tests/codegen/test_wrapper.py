"""compile_planned: mixed ATen and generated kernels, the Unsupported fallback, targets."""
import os
import subprocess
import sys

import pytest
import torch

from codegen_cases import NEEDS_INTERPRETER, QUIET_INTERPRETER, assert_close, mark, trace

pytestmark = [NEEDS_INTERPRETER, QUIET_INTERPRETER]


def compile_planned(gm, target="triton-interpret", **kwargs):
    from fastc.codegen.wrapper import compile_planned as compile_
    return compile_(gm, target, **kwargs)


def test_graph_with_several_kernels_and_aten_ops_between():
    def f(x, w):
        h = torch.mm(x, w).relu()                 # kernel 0: matmul + epilogue
        c = torch.cumsum(h, 1)                    # unmarked: ATen
        y = torch.softmax(c * 0.1, -1)            # kernel 1: reduction
        return (y + 1).exp(), c                   # kernel 2: pointwise
    x, w = torch.randn(6, 10), torch.randn(10, 8)
    gm = trace(f, x, w)
    mark(gm, "matmul", lambda n: n.name in ("mm", "relu"), kernel=0)
    mark(gm, "reduction", lambda n: n.name in ("mul", "_softmax"), kernel=1)
    mark(gm, "pointwise", lambda n: n.name in ("add", "exp"), kernel=2)
    run, info = compile_planned(gm)
    assert info.kernels == ["k0_matmul", "k1_reduction", "k2_pointwise"], info.text()
    assert set(info.sources) == set(info.kernels)
    assert all(src.count("@triton.jit") == 1 for src in info.sources.values())
    assert_close(tuple(run(x, w)), f(x, w))


def test_unsupported_op_runs_as_aten_with_its_reason():
    def f(x):
        return torch.cumsum(x.exp(), 0) + 1
    x = torch.randn(5, 3)
    run, info = compile_planned(mark(trace(f, x), "pointwise"))
    assert info.kernels == []
    ((name, reason),) = info.fallbacks
    assert name == "k0_pointwise" and "cumsum" in reason
    assert_close(run(x), f(x))


def test_unsupported_kernel_shape_runs_as_aten():
    def f(x, y):
        a = x * 2
        return a, a + y          # outputs of different sizes in one pointwise kernel
    x, y = torch.randn(4), torch.randn(3, 4)
    run, info = compile_planned(mark(trace(f, x, y), "pointwise"))
    assert "different sizes" in info.fallbacks[0][1]
    assert_close(tuple(run(x, y)), f(x, y))


def test_kernel_failing_on_first_call_falls_back(monkeypatch):
    from fastc.codegen.triton.launcher import GeneratedKernel

    def broken(self, *args, **kwargs):
        raise RuntimeError("simulated compile error")
    x = torch.randn(4)
    run, info = compile_planned(mark(trace(lambda x: x.exp() + 1, x), "pointwise"))
    monkeypatch.setattr(GeneratedKernel, "run", broken)
    assert_close(run(x), x.exp() + 1)
    assert "simulated compile error" in info.fallbacks[0][1] and info.kernels == []


def test_strict_raises_when_generated_code_fails(monkeypatch):
    from fastc.codegen.triton.launcher import GeneratedKernel

    def broken(self, *args, **kwargs):
        raise RuntimeError("simulated compile error")
    x = torch.randn(4)
    run, info = compile_planned(mark(trace(lambda x: x.exp() + 1, x), "pointwise"), strict=True)
    monkeypatch.setattr(GeneratedKernel, "run", broken)
    with pytest.raises(RuntimeError, match="simulated compile error"):
        run(x)


def test_empty_rows_run_as_aten_for_that_call():
    gm = mark(trace(lambda x: (x * 2).sum(-1), torch.randn(3, 5), symbolic=True), "reduction")
    run, info = compile_planned(gm)
    assert info.kernels == ["k0_reduction"]
    assert_close(run(torch.randn(4, 0)), torch.zeros(4))
    x = torch.randn(2, 7)
    assert_close(run(x), (x * 2).sum(-1))
    assert info.kernels == ["k0_reduction"]


def test_parsed_graph_with_kernel_attributes():
    from fastc.ir import parse_graph
    gm = parse_graph("""
graph @f(%x: f32[4, 6], %b: f32[6]) {
  %a: f32[4, 6] = aten.add.Tensor(%x, %b) {kernel = 0, kind = "reduction"}
  %m: f32[4, 1] = aten.amax.default(%a, [1], true) {kernel = 0, kind = "reduction"}
  %s: f32[4, 6] = aten.sub.Tensor(%a, %m) {kernel = 0, kind = "reduction"}
  return (%s,)
}""")
    run, info = compile_planned(gm)
    x, b = torch.randn(4, 6), torch.randn(6)
    a = x + b
    assert info.kernels == ["k0_reduction"], info.text()
    assert_close(tuple(run(x, b)), (a - a.amax(1, keepdim=True),))


def test_size_symbols_bound_from_other_graph_inputs():
    """The kernel reads only y (size 2*s0); s0 comes from x, a graph input the kernel never reads."""
    from fastc.ir import parse_graph
    gm = parse_graph("""
graph @f(%x: f32[s0, 8], %y: f32[2*s0]) {
  %a: f32[2*s0] = aten.mul.Tensor(%y, 2.0) {kernel = 0, kind = "pointwise"}
  %b: f32[2*s0] = aten.exp.default(%a) {kernel = 0, kind = "pointwise"}
  return (%b,)
}""")
    run, info = compile_planned(gm)
    assert info.kernels == ["k0_pointwise"], info.text()
    for n in (3, 5):
        x, y = torch.randn(n, 8), torch.randn(2 * n)
        assert_close(tuple(run(x, y)), ((y * 2).exp(),))


def test_unknown_target_is_named():
    with pytest.raises(ValueError, match="valid: triton-interpret, triton"):
        compile_planned(trace(lambda x: x + 1, torch.randn(2)), "cuda")


def test_interpret_target_explains_triton_imported_without_interpreter():
    """In a process where triton's interpreter is off, the error says what to set."""
    code = ("import triton, triton.knobs as k\n"
            "k.runtime.interpret = False\n"
            "import os; os.environ.pop('TRITON_INTERPRET', None)\n"
            "from fastc.codegen.wrapper import prepare_triton\n"
            "try:\n    prepare_triton('triton-interpret')\nexcept RuntimeError as e:\n    print(e)\n")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "set TRITON_INTERPRET=1" in out.stdout, out.stdout + out.stderr


def test_max_autotune_measures_candidates_and_keeps_the_fastest():
    from fastc.codegen.schedule import Schedule, candidate_schedules
    from fastc.costmodel import HeuristicChoices, KernelFeatures
    x = torch.randn(6, 40)
    run, info = compile_planned(mark(trace(lambda x: torch.softmax(x * 2, -1), x), "reduction"),
                                strict=True, autotune=True)
    assert_close(run(x), torch.softmax(x * 2, -1))
    records = info.measurements
    sizes = {"xnumel": 6, "rnumel": 40}
    assert all(r["sizes"] == sizes and r["name"] == "k0_reduction" for r in records)
    measured = [Schedule(**r["candidate"]) for r in records]
    heuristic = HeuristicChoices().schedule(KernelFeatures("k0_reduction", "reduction", "triton-interpret", sizes=sizes))
    assert measured[0] == heuristic, "the choices object's own schedule is measured first"
    assert set(measured) == set(candidate_schedules("reduction", sizes)) | {heuristic} and len(measured) > 1
    (chosen,) = [r for r in records if r["chosen"]]
    assert chosen["ms"] == min(r["ms"] for r in records)
    assert_close(run(x), torch.softmax(x * 2, -1))  # the second call runs the winner only
    assert len(info.measurements) == len(records)
