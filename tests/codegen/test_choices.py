"""One choices object decides (fastc.costmodel): swapping it changes which fusions, schedules and
ATen-or-generated choices are made, never the results (compared with eager); HeuristicChoices
makes the decisions fastc made before it existed; every measurement lands in the report with
the features a cost model trains on."""
import json

import pytest
import torch
import torch._dynamo

from codegen_cases import NEEDS_INTERPRETER, QUIET_INTERPRETER, assert_close, mark, trace
from fastc.codegen.schedule import Schedule
from fastc.costmodel import (ATEN, Choices, FusionCandidate, HeuristicChoices, KernelFeatures, MeasuredChoices,
                             set_default_choices)
from fastc.ir import parse_graph
from fastc.passes import PassContext, PlanKernels
from fastc.report import REPORTS


class Recorder(Choices):
    """Test-only: decides as `inner` does and remembers what it was asked and what it decided."""

    def __init__(self, inner: Choices):
        self.inner, self.fusions, self.decisions = inner, [], {}

    def fuse(self, c):
        self.fusions.append(c)
        return self.inner.fuse(c)

    def product_in_kernel(self, k):
        return self.inner.product_in_kernel(k)

    def schedule(self, k):
        return self.inner.schedule(k)

    def build_up_front(self, k, schedule):
        return self.inner.build_up_front(k, schedule)

    def choose(self, k, candidates, run=None, records=None):
        choice = self.inner.choose(k, candidates, run, records)
        if choice is not None:
            self.decisions[k.name] = choice
        return choice


class PreferAten(HeuristicChoices):
    """Test-only: a kernel's ATen ops whenever they are a candidate."""

    def choose(self, k, candidates, run=None, records=None):
        return ATEN if ATEN in candidates else super().choose(k, candidates, run, records)


def f(x, w, b):
    h = torch.nn.functional.linear(x, w, b).relu()
    return torch.softmax(h * 2, -1), (x.exp() + 1).sum(0)


def _inputs():
    torch.manual_seed(0)
    return torch.randn(8, 16), torch.randn(12, 16), torch.randn(12)


def _compile_and_run(options: dict, calls: int = 1, dynamic=False):
    torch._dynamo.reset()
    start = len(REPORTS)
    compiled = torch.compile(f, backend="fastc", dynamic=dynamic, options={"on_error": "raise", **options})
    args = _inputs()
    with torch.no_grad():
        for _ in range(calls):
            assert_close(compiled(*args), f(*args))
    (report,) = REPORTS[start:]
    return report


# Swapping --------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["cpu"])
def test_swapping_the_choices_object_changes_decisions_not_results(target):
    pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")
    seen = {}
    for name, inner in {"rules": HeuristicChoices(), "small kernels on threads":
                        HeuristicChoices(max_ops=2, parallel_min_elements=1), "aten": PreferAten()}.items():
        choices = Recorder(inner)
        report = _compile_and_run({"target": target, "kernel_choice": "measure", "choices": choices})
        assert choices.fusions and choices.decisions, name
        assert not report.measurements, "none of these measures"
        seen[name] = (report.kernels, choices.decisions)
    rules, small, aten = seen["rules"], seen["small kernels on threads"], seen["aten"]
    assert len(small[0]) > len(rules[0]), "max_ops=2 refuses fusions the rules make"
    assert all(not s.parallel for s in rules[1].values())
    assert all(s.parallel for s in small[1].values())
    assert set(aten[1].values()) == {ATEN}


def test_process_wide_default_and_per_compile_choices():
    pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")
    everywhere = Recorder(HeuristicChoices(max_ops=1))
    previous = set_default_choices(everywhere)
    try:
        report = _compile_and_run({"target": "cpu", "kernel_choice": "generated"})
        assert all(" 1 ops " in k for k in report.kernels), report.kernels
        assert everywhere.decisions
        own = Recorder(HeuristicChoices())
        report = _compile_and_run({"target": "cpu", "kernel_choice": "generated", "choices": own})
        assert any(" 1 ops " not in k for k in report.kernels), "the compilation's own choices win"
        assert own.decisions
    finally:
        assert set_default_choices(previous) is everywhere
    with pytest.raises(TypeError, match="expected a fastc.costmodel.Choices"):
        set_default_choices("fastest")


@NEEDS_INTERPRETER
@QUIET_INTERPRETER
def test_triton_schedules_from_another_choices_object_compute_the_same():
    from fastc.codegen.wrapper import compile_planned

    class TinyBlocks(HeuristicChoices):
        def schedule(self, k):
            return Schedule(XBLOCK=2, RBLOCK=4, num_warps=1) if k.kind == "reduction" else super().schedule(k)
    x = torch.randn(6, 40)
    for choices in (HeuristicChoices(), TinyBlocks()):
        run, info = compile_planned(mark(trace(lambda x: torch.softmax(x * 2, -1), x), "reduction"),
                                    strict=True, choices=choices)
        assert_close(run(x), torch.softmax(x * 2, -1))
        assert info.kernels == ["k0_reduction"] and info.choices is choices
    assert info.decisions == {"k0_reduction": "XBLOCK 2, RBLOCK 4, 1 warps"}


# Planning ---------------------------------------------------------------------------------------

LINEAR = """
graph @linear_gelu(%x: f32[6, 4], %w: f32[4, 8], %bias: f32[8]) {
  %mm: f32[6, 8] = aten.mm.default(%x, %w)
  %b: f32[6, 8] = aten.add.Tensor(%mm, %bias)
  %g: f32[6, 8] = aten.gelu.default(%b)
  return (%g,)
}"""


def _kinds(ctx: PassContext, **options) -> list:
    gm = parse_graph(LINEAR)
    PlanKernels(**options).run(gm, ctx)
    return [n.meta.get("kernel_kind") for n in gm.graph.nodes if n.op == "call_function"]


def test_plan_kernels_asks_the_choices_object():
    assert _kinds(PassContext(target="triton")) == ["matmul"] * 3
    assert _kinds(PassContext(target="cpu")) == [None, "pointwise", "pointwise"], "ATen's GEMM on the CPU"
    assert _kinds(PassContext(target="cpu", choices=HeuristicChoices(products_on_cpu=True))) == ["matmul"] * 3
    assert _kinds(PassContext(target="triton"), products=False) == [None, "pointwise", "pointwise"]
    assert _kinds(PassContext(target="triton", choices=HeuristicChoices(epilogues=False))) == [
        "matmul", "pointwise", "pointwise"]
    recorder = Recorder(HeuristicChoices())
    _kinds(PassContext(target="triton", choices=recorder))
    assert FusionCandidate("matmul", "pointwise", "matmul", 1, 1, 48, "triton") in recorder.fusions
    # The pass's options narrow what the choices object is offered; they never widen it.
    recorder = Recorder(HeuristicChoices())
    assert _kinds(PassContext(target="triton", choices=recorder), max_ops=2) == ["matmul", "matmul", "pointwise"]
    assert all(c.ops <= 2 for c in recorder.fusions)


# HeuristicChoices = the decisions fastc made before --------------------------------------------

# heuristic_schedule and FusionChoices as they were (commit cee8c66), on a few problems.
OLD_SCHEDULES = [
    ("pointwise", {"xnumel": 1}, "triton", Schedule(XBLOCK=16, num_warps=2)),
    ("pointwise", {"xnumel": 100}, "triton", Schedule(XBLOCK=128, num_warps=2)),
    ("pointwise", {"xnumel": 300}, "triton", Schedule(XBLOCK=512, num_warps=4)),
    ("pointwise", {"xnumel": 5000}, "triton", Schedule()),
    ("reduction", {"xnumel": 6, "rnumel": 40}, "triton", Schedule(XBLOCK=8, RBLOCK=64, num_warps=4)),
    ("reduction", {"xnumel": 1000, "rnumel": 3000}, "triton", Schedule(XBLOCK=2, RBLOCK=1024, num_warps=8)),
    ("reduction", {"xnumel": 1, "rnumel": 1}, "triton", Schedule(XBLOCK=1, RBLOCK=2, num_warps=4)),
    ("matmul", {"M": 8, "N": 300, "K": 20}, "triton", Schedule(BLOCK_M=16, BLOCK_N=64, BLOCK_K=32, num_stages=3)),
    ("matmul", {"M": 1000, "N": 1000, "K": 1000}, "triton", Schedule(BLOCK_M=64, BLOCK_N=64, BLOCK_K=32, num_stages=3)),
    ("pointwise", {"xnumel": 1000}, "cpu", Schedule(XBLOCK=0)),
    # cpu threads from 2^15 elements (2^20 before kernels split by rows on torch's threads)
    ("reduction", {"xnumel": (1 << 15) - 1}, "cpu", Schedule(XBLOCK=0)),
    ("matmul", {"xnumel": 1 << 20}, "cpu", Schedule(XBLOCK=0, parallel=True)),
]


@pytest.mark.parametrize("kind, sizes, target, expected", OLD_SCHEDULES)
def test_heuristic_schedules_are_the_old_ones(kind, sizes, target, expected):
    assert HeuristicChoices().schedule(KernelFeatures("k", kind, target, sizes=sizes)) == expected


def test_heuristic_fusion_products_and_builds_are_the_old_ones():
    rules = HeuristicChoices()
    assert rules.fuse(FusionCandidate("pointwise", "pointwise", "pointwise", 32, 32))
    assert not rules.fuse(FusionCandidate("pointwise", "pointwise", "pointwise", 32, 33)), "at most 64 ops"
    assert not HeuristicChoices(epilogues=False).fuse(FusionCandidate("matmul", "pointwise", "matmul", 2, 1))
    assert not HeuristicChoices(reductions=False).fuse(FusionCandidate("pointwise", "reduction", "reduction", 1, 1))
    assert HeuristicChoices(reductions=False).fuse(FusionCandidate("matmul", "pointwise", "matmul", 2, 1))
    assert not rules.product_in_kernel(KernelFeatures("mm", "matmul", "cpu"))
    assert rules.product_in_kernel(KernelFeatures("mm", "matmul", "triton"))
    parallel = Schedule(XBLOCK=0, parallel=True)
    # 2^15 since the cpu target's threads split kernels by rows (2^16 before)
    assert not rules.build_up_front(KernelFeatures("k", "pointwise", "cpu", sizes={"xnumel": (1 << 15) - 1}), parallel)
    assert rules.build_up_front(KernelFeatures("k", "pointwise", "cpu", sizes={"xnumel": 1 << 15}), parallel)
    assert rules.build_up_front(KernelFeatures("k", "pointwise", "cpu", sizes=None), parallel), "dynamic"
    k = KernelFeatures("k", "pointwise", "cpu", sizes={"xnumel": 10})
    assert rules.choose(k, [ATEN, Schedule(XBLOCK=0), parallel]) == Schedule(XBLOCK=0), "generated, never ATen"


def test_static_shapes_are_decided_at_compile_time():
    pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")
    from fastc.codegen.wrapper import compile_planned
    x = torch.randn(8, 16)

    def planned():
        return mark(trace(lambda x: torch.softmax(x * 2, -1), x), "reduction")
    run, info = compile_planned(planned(), "cpu", strict=True, choose="generated")
    assert info.decisions == {"k0_reduction": "native, 1 thread"}, "decided before any call"
    assert_close(run(x), torch.softmax(x * 2, -1))
    run, info = compile_planned(planned(), "cpu", strict=True, choose="measure")
    assert isinstance(info.choices, MeasuredChoices) and not info.decisions, "measured at the first call"
    assert_close(run(x), torch.softmax(x * 2, -1))
    assert set(info.decisions) == {"k0_reduction"} and info.measurements


# Measurements ------------------------------------------------------------------------------------

FEATURES = {"name", "kind", "target", "sizes", "ops", "op_counts", "dtype", "inputs", "bytes_read",
            "bytes_written", "device"}


def test_measurements_are_recorded_in_the_report_with_features():
    pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")
    report = _compile_and_run({"target": "cpu"}, calls=3)  # kernel_choice="measure": the default
    records = report.measurements
    assert records and json.loads(json.dumps(records)) == records
    assert json.loads(report.json())["measurements"] == records
    for r in records:
        assert FEATURES | {"candidate", "ms", "runs", "chosen", "machine"} <= set(r), r
        assert r["target"] == "cpu" and r["dtype"] == "float32" and r["machine"] and r["ms"] > 0
        assert r["ops"] >= 1 and sum(r["op_counts"].values()) == r["ops"]
        assert r["sizes"]["xnumel"] > 0 and r["bytes_read"] > 0 and r["bytes_written"] > 0
        assert all(isinstance(x[0], list) for x in r["inputs"]), "shape, strides, dtype per input"
    names = {r["name"] for r in records}
    assert names and set(report.generated_kernels) == names
    for name in names:
        mine = [r for r in records if r["name"] == name]
        assert sum(r["chosen"] for r in mine) == 1, "one decision per kernel and problem, measured once"
        assert ATEN in [r["candidate"] for r in mine]
        assert any(isinstance(r["candidate"], dict) and "parallel" in r["candidate"] for r in mine)
    assert "measured k" in report.text()


def test_dynamic_shapes_are_measured_per_problem():
    pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")
    from fastc.codegen.wrapper import compile_planned
    x = torch.randn(8, 16)
    gm = mark(trace(lambda x: torch.softmax(x * 2, -1), x, symbolic=True), "reduction")
    run, info = compile_planned(gm, "cpu", strict=True, choose="measure")
    for rows in (8, 8, 5):
        x = torch.randn(rows, 16)
        assert_close(run(x), torch.softmax(x * 2, -1))
    problems = {json.dumps(r["sizes"]) for r in info.measurements}
    assert len(problems) == 2, problems
    assert sum(r["chosen"] for r in info.measurements) == 2
    assert {r["bytes_read"] for r in info.measurements} == {8 * 16 * 4, 5 * 16 * 4}
