"""ATen or native code per kernel on the CPU target: measured, not guessed (MeasuredChoices).

The decisions and timings are checked for shape (every candidate measured once per problem, the
winner is the fastest measured, results equal eager's whichever wins); which candidate wins is
the machine's business and never asserted."""
import pytest
import torch

from fastc.codegen.schedule import Schedule, candidate_schedules
from fastc.codegen.wrapper import compile_planned
from fastc.costmodel import ATEN, HeuristicChoices, KernelFeatures, MeasuredChoices
from fastc.ir import parse_graph

pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")

GRAPH = """
graph @scale_softmax(%x: f32[64, 96]) {
  %s: f32[64, 96] = aten.mul.Tensor(%x, 0.5) {kernel = 0, kind = "reduction"}
  %y: f32[64, 96] = aten._softmax.default(%s, -1, false) {kernel = 0, kind = "reduction"}
  return (%y,)
}"""


def _run(autotune: bool):
    gm = parse_graph(GRAPH)
    run, info = compile_planned(gm, "cpu", strict=True, autotune=autotune, choose="measure")
    assert isinstance(info.choices, MeasuredChoices)
    x = torch.randn(64, 96)
    for _ in range(3):
        (out,) = run(x)
        torch.testing.assert_close(out, torch.softmax(x * 0.5, -1), atol=1e-6, rtol=1e-5)
    return info


def test_measure_compares_aten_with_the_generated_kernel_and_keeps_the_fastest():
    records = _run(autotune=False).measurements
    assert {r["name"] for r in records} == {"k0_reduction"}
    assert sum(r["chosen"] for r in records) == 1, "one decision per kernel and problem"
    candidates = [r["candidate"] for r in records]
    assert ATEN in candidates and any(isinstance(c, dict) for c in candidates)
    chosen = next(r for r in records if r["chosen"])
    assert chosen["ms"] == min(r["ms"] for r in records)
    assert all(r["ms"] > 0 for r in records)


def test_max_autotune_measures_every_cpu_candidate_schedule():
    info = _run(autotune=True)
    measured = {Schedule(**r["candidate"]) for r in info.measurements if r["candidate"] != ATEN}
    expected = set(candidate_schedules("reduction", {"xnumel": 64 * 96}, target="cpu"))
    assert measured == expected, (measured, expected)
    assert any(s.parallel for s in measured) and any(not s.parallel for s in measured)
    text = info.text()
    assert "measured k0_reduction" in text and "ATen" in text


def test_cpu_heuristic_runs_big_kernels_on_threads_only():
    def schedule(numel):
        return HeuristicChoices().schedule(KernelFeatures("k0_pointwise", "pointwise", "cpu", sizes={"xnumel": numel}))
    assert not schedule(1000).parallel
    assert schedule(1 << 22).parallel


def test_one_stalled_run_does_not_decide(monkeypatch):
    """Each candidate keeps its fastest run, timed in interleaved rounds: a stall of the machine
    during one run of the faster candidate (here its second timed run, 40 ms) does not make the
    slower one win. Times come from a fake clock, so nothing here depends on the machine."""
    import fastc.costmodel.measured as measured
    clock = {"now": 0.0}
    runs = {"fast": 0}
    fast = Schedule(XBLOCK=0)

    def run(candidate):
        if candidate == fast:
            runs["fast"] += 1
            clock["now"] += 0.040 if runs["fast"] == 3 else 0.001  # warm-up, first timing, stall
        else:
            clock["now"] += 0.003
        return (torch.ones(4),)

    monkeypatch.setattr(measured.time, "perf_counter", lambda: clock["now"])
    k = KernelFeatures("k", "pointwise", "cpu", sizes={"xnumel": 4})
    records = []
    assert MeasuredChoices().choose(k, [ATEN, fast], run, records) == fast
    ms = {str(r["candidate"]): (r["ms"], r["runs"]) for r in records}
    assert ms["aten"] == (pytest.approx(3.0), 5)
    assert [v for key, v in ms.items() if key != "aten"] == [(pytest.approx(1.0), 5)]


def test_candidates_are_timed_outside_python_dispatch_modes():
    """A compiled graph's first call runs under aot_autograd's Python dispatch mode; timing the
    candidates under it would time Python, not the kernels (ATen ops all go through it)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counting(TorchDispatchMode):
        ops = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            Counting.ops += 1
            return func(*args, **(kwargs or {}))

    x = torch.randn(8)

    def run(candidate):
        return (torch.add(x, 1),)

    k = KernelFeatures("k", "pointwise", "cpu", sizes={"xnumel": 8})
    with Counting():
        torch.add(x, 1)
        seen = Counting.ops
        MeasuredChoices().choose(k, [ATEN, Schedule(XBLOCK=0)], run, [])
        assert Counting.ops == seen == 1
        torch.add(x, 1)  # the mode is back afterwards
    assert Counting.ops == 2


def test_a_failing_aten_candidate_is_an_error_not_a_silent_choice():
    def run(candidate):
        if candidate == ATEN:
            raise RuntimeError("aten failed")
        return (torch.ones(4),)
    k = KernelFeatures("k", "pointwise", "cpu", sizes={"xnumel": 4})
    with pytest.raises(RuntimeError, match="aten failed"):
        MeasuredChoices().choose(k, [ATEN, Schedule(XBLOCK=0)], run, [])


def test_a_damaged_cache_entry_is_rebuilt(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTC_CACHE_DIR", str(tmp_path))
    x = torch.randn(64, 96)
    run, _ = compile_planned(parse_graph(GRAPH), "cpu", strict=True, choose="generated")
    run(x)
    entries = list((tmp_path / "cpu").glob("*.mlir"))
    assert entries, "the lowered module was not cached"
    for entry in entries:
        entry.write_text("module { this is not MLIR")
    run, info = compile_planned(parse_graph(GRAPH), "cpu", strict=True, choose="generated")
    (out,) = run(x)
    torch.testing.assert_close(out, torch.softmax(x * 0.5, -1), atol=1e-6, rtol=1e-5)
    assert info.kernels == ["k0_reduction"] and not info.fallbacks
    assert all("llvm.func" in e.read_text() for e in entries), "the damaged entry was not rewritten"
