"""ATen or native code per kernel on the CPU target: measured, not guessed (codegen/choose.py).

The chooser's decisions and timings are checked for shape (every candidate measured once per
problem, the winner is the fastest measured, results equal eager's whichever wins); which
candidate wins is the machine's business and never asserted."""
import pytest
import torch

from fastc.codegen.choose import ATEN, Chooser
from fastc.codegen.schedule import Schedule, candidate_schedules, heuristic_schedule
from fastc.codegen.wrapper import compile_planned
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
    x = torch.randn(64, 96)
    for _ in range(3):
        (out,) = run(x)
        torch.testing.assert_close(out, torch.softmax(x * 0.5, -1), atol=1e-6, rtol=1e-5)
    return info.chooser


def test_measure_compares_aten_with_the_generated_kernel_and_keeps_the_fastest():
    chooser = _run(autotune=False)
    assert len(chooser.best) == 1, "one decision per kernel and problem"
    (key, timings), = chooser.timings.items()
    choices = [c for _, c in timings]
    assert ATEN in choices and any(isinstance(c, Schedule) for c in choices)
    assert chooser.best[key] == min(timings, key=lambda t: t[0])[1]
    assert all(ms > 0 for ms, _ in timings)


def test_max_autotune_measures_every_cpu_candidate_schedule():
    chooser = _run(autotune=True)
    (key, timings), = chooser.timings.items()
    measured = {c for _, c in timings if c is not ATEN}
    expected = set(candidate_schedules("reduction", {"xnumel": 64 * 96}, target="cpu"))
    assert measured == expected, (measured, expected)
    assert any(s.parallel for s in measured) and any(not s.parallel for s in measured)
    text = "\n".join(chooser.choice_text())
    assert "k0_reduction" in text and "ATen" in text


def test_cpu_heuristic_runs_big_kernels_on_threads_only():
    assert not heuristic_schedule("pointwise", {"xnumel": 1000}, target="cpu").parallel
    assert heuristic_schedule("pointwise", {"xnumel": 1 << 22}, target="cpu").parallel


def test_a_failing_aten_candidate_is_an_error_not_a_silent_choice():
    chooser = Chooser()

    class Native:
        name, kind, schedules, entries = "k", "pointwise", [], {}

        def problem_sizes(self, *inputs, symbols=None):
            return {"xnumel": 4}

        def run(self, *inputs, schedule=None, symbols=None):
            return (inputs[0] + 1,)

    def broken_aten():
        raise RuntimeError("aten failed")
    with pytest.raises(RuntimeError, match="aten failed"):
        chooser.run(Native(), [torch.ones(4)], {}, broken_aten)


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
