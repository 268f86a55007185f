"""Profiling: fastc's kernels by name in torch.profiler traces, and `fastc explain --profile`."""
import pytest
import torch

from fastc.cli import main
from fastc.codegen import wrapper
from fastc.profiling import profile_model
from fastc.report import REPORTS
from fastc_eval import zoo


def _compile(name="mlp"):
    model, inputs = zoo.build(name)
    model.eval()
    torch._dynamo.reset()
    first = len(REPORTS)
    compiled = torch.compile(model, backend="fastc", options={"target": "cpu"})
    with torch.no_grad():
        compiled(**inputs)
    reports = REPORTS[first:]
    assert reports and all(r.ranges for r in reports), "a graph with planned kernels"
    return model, compiled, inputs, reports


def _trace_names(fn, inputs) -> list[str]:
    with torch.no_grad(), torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn(**inputs)
    return [e.name for e in prof.events()]


def test_every_kernel_is_a_named_range_in_the_trace():
    _, compiled, inputs, reports = _compile()
    names = _trace_names(compiled, inputs)
    fastc = [n for n in names if n.startswith("fastc::")]
    expected = [range_ for r in reports for range_ in r.ranges.values()]
    graphs = [f"fastc::g{r.graph_id}" for r in reports]
    # Each kernel and each graph once per call, and nothing else.
    assert sorted(fastc) == sorted(expected + graphs)
    # The ranges are the graph's kernels: the plan's names, generated or run as ATen.
    for r in reports:
        planned = set(r.generated_kernels) | {name for name, _ in r.aten_kernels}
        assert planned and planned <= set(r.ranges), (planned, r.ranges)
        assert len(r.ranges) == len(r.kernels) + len(r.library_calls)
        for name in planned:
            assert r.ranges[name] == f"fastc::g{r.graph_id}.{name}"


def test_without_a_profiler_no_range_code_runs(monkeypatch):
    model, compiled, inputs, _ = _compile()

    def broken(self, *args):
        raise AssertionError("a range wrapper ran without a profiler")
    monkeypatch.setattr(wrapper._Ranged, "__call__", broken)
    with torch.no_grad():
        expected = model(**inputs)
        torch.testing.assert_close(compiled(**inputs), expected)
        with pytest.raises(AssertionError, match="without a profiler"), torch.profiler.profile():
            compiled(**inputs)  # under a profiler, the wrappers do run
        monkeypatch.undo()
        with torch.profiler.profile():
            profiled = compiled(**inputs)
        torch.testing.assert_close(profiled, expected)
        torch.testing.assert_close(compiled(**inputs), expected)


@pytest.fixture(scope="module")
def mlp_profile():
    return profile_model("mlp", target="cpu", calls=3, rounds=1, warmup=1)


def test_profile_parts_add_up(mlp_profile):
    p = mlp_profile
    assert p.kernels and p.ops
    assert all(k.calls == 1 for k in p.kernels), p.text()      # each kernel once per forward
    parts = p.kernel_ms() + p.ops_ms
    assert 0 < parts <= p.wall_ms, p.text()
    assert p.kernel_ms() + p.graph_ops_ms <= p.graph_ms <= p.wall_ms, p.text()
    assert 0 <= p.graph_overhead_ms <= p.overhead_ms, p.text()
    assert p.eager_ms > 0 and p.fastc_ms > 0 and 0 < p.eager_ops_ms <= p.eager_wall_ms
    assert {o.name for o in p.ops} == {"aten::addmm"}, p.text()  # mlp: its products stay ATen
    assert all(o.eager_ms is not None for o in p.ops)


def test_profile_table_lists_every_kernel(mlp_profile):
    text = mlp_profile.text()
    for k in mlp_profile.kernels:
        assert f"  {k.range} " in text
    assert "overhead in the graph" in text and "fastc / eager" in text and "aten::addmm" in text


def test_explain_profile_command(capsys):
    first = len(REPORTS)
    assert main(["explain", "--profile", "mlp", "--calls", "1"]) == 0
    out = capsys.readouterr().out
    reports = REPORTS[first:]
    assert reports and "fastc target cpu" in out
    for r in reports:
        for name in set(r.generated_kernels) | {n for n, _ in r.aten_kernels}:
            assert f"fastc::g{r.graph_id}.{name}" in out, out


@pytest.mark.parametrize("argv, phrase", [
    (["explain", "--profile", "nope"], "unknown model 'nope'"),
    (["explain", "--profile", "mlp", "--graph"], "--profile takes no"),
    (["explain", "--profile", "mlp", "--calls", "0"], "argument --calls"),
])
def test_explain_profile_mistakes(capsys, argv, phrase):
    try:
        status = main(argv)
    except SystemExit as e:
        status = e.code
    assert status == 2
    assert phrase in capsys.readouterr().err
