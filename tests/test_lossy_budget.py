"""Lossy passes under an accuracy budget: the options and their errors, the calibration set
reaching the graph, the metrics, and the search that keeps the largest set of a pass's proposals
within the budget. Every number is checked against eager PyTorch on the held-out inputs."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import pytest
import torch
import torch._dynamo
import torch.nn as nn

import fastc
from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.options import make_options
from fastc.passes import LossyPass, Proposal, register


@register
@dataclass(frozen=True)
class _RoundEach(LossyPass):
    """Test-only: rounds each weight constant to `decimals` decimals, one proposal per constant,
    least rounding error first."""
    name = "test-only-round-each"
    decimals: int = 1

    def propose(self, gm, ctx):
        out = []
        for node in gm.graph.nodes:
            if is_constant(node) and constant_value(node).dim() == 2:
                value = constant_value(node)
                rounded = torch.round(value, decimals=self.decimals)
                out.append(Proposal(node.name, float((rounded - value).norm() / value.norm()),
                                    _replacer(node.name, rounded),
                                    value.numel() * 4, value.numel() * 4))
        return sorted(out, key=lambda p: p.sensitivity)

    def retry(self, gm, ctx, left_out):
        # what = "name@decimals": the left-out constants again, one decimal finer (up to 4)
        decimals = {p.what.split("@")[0]: int(p.what.split("@")[1]) if "@" in p.what else self.decimals
                    for p in left_out}
        out = []
        for name, d in decimals.items():
            if d < 4:
                (p,) = [q for q in _RoundEach(d + 1).propose(gm, ctx) if q.what == name]
                out.append(dataclasses.replace(p, what=f"{name}@{d + 1}"))
        return sorted(out, key=lambda p: p.sensitivity)


def _replacer(name, value):
    def apply(g):
        node = next(n for n in g.graph.nodes if n.name == name)
        new = add_constant(g, value, hint=f"{name}_rounded", before=node)
        node.replace_all_uses_with(new)
        g.graph.erase_node(node)
    return apply


@pytest.fixture(autouse=True)
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 10)).eval()


def _calibration(n=6, batch=8):
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(batch, 16, generator=g),) for _ in range(n)]


def _compile(model, x, **options):
    before = len(fastc.reports())
    with torch.no_grad():
        out = torch.compile(model, backend="fastc", options={"on_error": "raise", "target": "aten", **options})(x)
    return out, fastc.reports()[before:]


def _relative_l2(model, compiled_outputs, inputs):
    with torch.no_grad():
        ref = torch.cat([model(*t) for t in inputs])
    return float((compiled_outputs - ref).norm() / ref.norm())


# -- options and their errors ------------------------------------------------------------------

BAD = [
    ({"lossy": "no-such-pass"}, r"fastc option lossy='no-such-pass': unknown pass 'no-such-pass'"),
    ({"lossy": "dead-code", "calibration": _calibration()}, r"'dead-code' is not a lossy pass \(lossy passes: .*shift-add"),
    ({"lossy": "test-only-round-each{decimals=x}", "calibration": _calibration()}, r"option decimals='x' is not valid"),
    ({"lossy": "test-only-round-each"}, r"lossy='test-only-round-each' needs option 'calibration'"),
    ({"lossy": 3, "calibration": _calibration()}, r"fastc option lossy=3 is not valid"),
    ({"lossy": "test-only-round-each", "calibration": []}, r"calibration has 0 input tuple\(s\): it needs at least 2"),
    ({"lossy": "test-only-round-each", "calibration": [(torch.ones(1),)]}, r"it needs at least 2"),
    ({"lossy": "test-only-round-each", "calibration": [torch.ones(2, 16)] * 2}, r"calibration\[0\] is a Tensor, not a tuple"),
    ({"lossy": "test-only-round-each", "calibration": 5}, r"fastc option calibration=5 is not valid"),
    ({"lossy": "test-only-round-each", "calibration": _calibration(), "accuracy_budget": -0.1},
     r"accuracy_budget=-0.1 is not valid \(valid: a finite number >= 0"),
    ({"lossy": "test-only-round-each", "calibration": _calibration(), "accuracy_budget": float("nan")},
     r"accuracy_budget=nan is not valid"),
    ({"lossy": "test-only-round-each", "calibration": _calibration(), "accuracy_metric": "top5"},
     r"accuracy_metric='top5' is not valid \(valid: 'agreement', 'relative-error' or a callable"),
    ({"calibration": _calibration()}, r"fastc option calibration is given but no lossy pass is named"),
    ({"accuracy_budget": 0.1}, r"fastc option accuracy_budget is given but no lossy pass is named"),
    ({"passes": "test-only-round-each,dead-code"}, r"'test-only-round-each' is lossy; name lossy passes in the 'lossy' option"),
]


@pytest.mark.parametrize("options,message", BAD)
def test_bad_lossy_options_are_clear_errors(options, message):
    with pytest.raises(ValueError, match=message):
        make_options(options)


def _compile_error(model, x, **options):
    with pytest.raises(Exception) as info:
        _compile(model, x, **options)
    return str(info.value)


def test_calibration_that_does_not_fit_the_model():
    model = _model()
    x = torch.randn(8, 16)
    message = _compile_error(model, x, lossy="test-only-round-each",
                             calibration=[(torch.randn(8, 16),), (torch.randn(8, 7),)])
    assert "fastc option calibration[1] does not fit the model" in message and "[8, 7]" in message
    message = _compile_error(model, x, lossy="test-only-round-each",
                             calibration=[(torch.randn(8, 16), torch.randn(3))] * 2)
    assert "calibration[0] does not fit the model: it has 2 inputs, and the model takes 1" in message, message
    message = _compile_error(model, x, lossy="test-only-round-each",
                             calibration=[(torch.randn(8, 16, dtype=torch.float64),)] * 2)
    assert "calibration[0] does not fit the model" in message and "torch.float64" in message


def test_calibration_callable_is_called_and_its_errors_named():
    model, x = _model(), torch.randn(8, 16)
    calls = []

    def calibration():
        calls.append(1)
        return iter(_calibration())
    _compile(model, x, lossy="test-only-round-each", calibration=calibration, accuracy_budget=0.5)
    assert calls == [1]

    def broken():
        raise RuntimeError("no data here")
    message = _compile_error(model, x, lossy="test-only-round-each", calibration=broken)
    assert "fastc option calibration: the callable raised RuntimeError: no data here" in message


def test_metric_that_raises_or_returns_no_number():
    model, x = _model(), torch.randn(8, 16)

    def raises(m):
        raise KeyError("labels")
    message = _compile_error(model, x, lossy="test-only-round-each", calibration=_calibration(),
                             accuracy_metric=raises, accuracy_budget=0.1)
    assert "fastc option accuracy_metric: the metric 'raises' raised KeyError" in message

    def not_a_number(m):
        return "good"
    message = _compile_error(model, x, lossy="test-only-round-each", calibration=_calibration(),
                             accuracy_metric=not_a_number, accuracy_budget=0.1)
    assert "returned 'good' (expected a finite number" in message

    def nan(m):
        return float("nan")
    message = _compile_error(model, x, lossy="test-only-round-each", calibration=_calibration(),
                             accuracy_metric=nan, accuracy_budget=0.1)
    assert "returned nan" in message


def test_lossy_passes_with_gradients_required_are_refused():
    model = _model().train()
    x = torch.randn(8, 16)
    compiled = torch.compile(model, backend="fastc", options={"lossy": "test-only-round-each",
                                                              "calibration": _calibration()})
    with pytest.raises(Exception, match="lossy passes rewrite models for inference, and this call requires gradients"):
        compiled(x)


# -- the budget ---------------------------------------------------------------------------------

def test_budget_zero_keeps_the_graph_exact():
    model, x = _model(), torch.randn(8, 16)
    out, (report,) = _compile(model, x, lossy="test-only-round-each{decimals=0}", calibration=_calibration(),
                              accuracy_budget=0.0)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-6)
    (record,) = report.lossy
    assert record.rewritten == [] and len(record.left_out) == 3 and "stays exact" in record.note


def test_relative_error_budget_keeps_the_longest_prefix_that_fits():
    model, x = _model(), torch.randn(8, 16)
    calibration = _calibration()
    held_out = calibration[3:]
    budget = 0.02
    out, (report,) = _compile(model, x, lossy="test-only-round-each{decimals=1}", calibration=calibration,
                              accuracy_metric="relative-error", accuracy_budget=budget)
    (record,) = report.lossy
    compiled = torch.compile(model, backend="fastc", options={
        "target": "aten", "lossy": "test-only-round-each{decimals=1}", "calibration": calibration,
        "accuracy_metric": "relative-error", "accuracy_budget": budget})
    with torch.no_grad():
        outs = torch.cat([compiled(*t) for t in held_out])
    measured = _relative_l2(model, outs, held_out)
    # The loss recorded is the loss the compiled model has on the held-out inputs, within budget.
    assert record.loss == pytest.approx(measured, rel=1e-4, abs=1e-7)
    assert record.loss <= budget
    assert record.metric == "relative-error" and record.metric_before == 0.0
    # Some weights were rounded at 1 decimal; what did not fit at 1 was retried at 2 decimals.
    assert record.rewritten and record.tries >= 2
    assert len(record.rewritten) + len(record.left_out) >= 3


@register
@dataclass(frozen=True)
class _RoundEachOnce(_RoundEach):
    """Test-only: rounds each weight constant as _RoundEach does, with no retry of what is left out."""
    name = "test-only-round-each-once"

    def retry(self, gm, ctx, left_out):
        return []


def test_prefix_search_matches_brute_force():
    """Every prefix measured by hand: the search keeps the longest one within the budget."""
    import copy

    import torch.fx as fx

    from fastc.lossy_search import run_lossy
    from fastc.passes import AccuracyCheck, PassContext, RelativeError
    from fastc_eval.frozen_graph import capture

    model = _model()
    held = [[t[0]] for t in _calibration()[3:]]
    gm = capture(model, (torch.randn(8, 16),))
    p = _RoundEachOnce(1)
    proposals = p.propose(gm, PassContext())
    assert len(proposals) == 3

    def loss(k):
        trial = fx.GraphModule(gm, copy.deepcopy(gm.graph))
        for q in proposals[:k]:
            q.apply(trial)
        trial.recompile()
        metric = RelativeError(held)
        return metric.loss(metric.start(gm), metric.value(trial))
    losses = [loss(k) for k in range(4)]
    assert losses[0] == 0 and losses == sorted(losses) and losses[3] > losses[1] > 0
    for keep in (1, 2):
        budget = (losses[keep] + losses[keep + 1]) / 2
        g = fx.GraphModule(gm, copy.deepcopy(gm.graph))
        ctx = PassContext(held_out_inputs=held, accuracy=AccuracyCheck(RelativeError(held), budget),
                          requested=frozenset({p.name}))
        record = run_lossy(g, p, ctx)
        assert record.rewritten == [q.what for q in proposals[:keep]]
        assert record.left_out == [q.what for q in proposals[keep:]]
        assert record.loss == pytest.approx(losses[keep], rel=1e-6)


def test_agreement_metric_and_report():
    model, x = _model(), torch.randn(8, 16)
    out, (report,) = _compile(model, x, lossy="test-only-round-each{decimals=0}", calibration=_calibration(),
                              accuracy_budget=0.05)
    (record,) = report.lossy
    assert record.metric == "agreement" and record.metric_before == 1.0
    assert record.loss == pytest.approx(1 - record.metric_after)
    assert record.loss <= 0.05
    text = report.text()
    assert "lossy test-only-round-each{decimals=0}" in text and "agreement" in text
    assert record.ms_before is not None and record.ms_after is not None
    assert record.weight_bytes_before > 0
    assert '"lossy"' in report.json()


def test_user_metric_gets_a_model_taking_the_users_inputs():
    model = _model()
    x = torch.randn(8, 16)
    data = torch.randn(64, 16)
    with torch.no_grad():
        labels = model(data).argmax(-1)
    seen = []

    def accuracy(m):
        # The graph was captured for batches of 8 (static shapes): the metric feeds it those.
        out = torch.cat([m(chunk) for chunk in data.split(8)])
        seen.append(out.shape)
        return float((out.argmax(-1) == labels).float().mean())
    out, (report,) = _compile(model, x, lossy="test-only-round-each{decimals=0}", calibration=_calibration(),
                              accuracy_metric=accuracy, accuracy_budget=0.1)
    (record,) = report.lossy
    assert record.metric == "accuracy" and record.metric_before == 1.0
    assert seen and all(s == (64, 10) for s in seen)
    assert record.loss <= 0.1


def test_dynamic_shapes_calibration_of_other_batch_sizes():
    model = _model()
    calibration = [(torch.randn(n, 16),) for n in (3, 5, 7, 9)]
    before = len(fastc.reports())
    compiled = torch.compile(model, backend="fastc", dynamic=True, options={
        "target": "aten", "on_error": "raise", "lossy": "test-only-round-each{decimals=1}",
        "calibration": calibration, "accuracy_metric": "relative-error", "accuracy_budget": 0.05})
    with torch.no_grad():
        out = compiled(torch.randn(4, 16))
    (report,) = fastc.reports()[before:]
    (record,) = report.lossy
    assert record.loss <= 0.05 and out.shape == (4, 10)


def test_graph_after_a_graph_break_leaves_lossy_passes_out_visibly(caplog):
    class Broken(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(16, 16), nn.Linear(16, 10)

        def forward(self, x):
            h = self.a(x)
            torch._dynamo.graph_break()
            return self.b(h)
    torch.manual_seed(0)
    model = Broken().eval()
    x = torch.randn(8, 16)
    with caplog.at_level("WARNING", logger="fastc"):
        out, reports = _compile(model, x, lossy="test-only-round-each{decimals=0}", calibration=_calibration(),
                                accuracy_budget=0.5)
    assert len(reports) == 2
    first, second = reports
    assert first.lossy and not second.lossy
    assert any("graph break" in (p.note or "") for p in second.passes)
    assert any("left out" in r.message and "graph break" in r.message for r in caplog.records)
    assert math.isfinite(float(out.sum()))


def test_dynamic_float_attribute_inputs_bind():
    """With dynamic=True Dynamo passes a module's float attribute (Embedding.norm_type) as a 0-d
    tensor input; the calibration binding reads the Python float and passes it the same way."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(20, 16), nn.Linear(16, 10)).eval()
    calibration = [(torch.randint(0, 20, (n,)),) for n in (5, 7, 9, 11)]
    before = len(fastc.reports())
    compiled = torch.compile(model, backend="fastc", dynamic=True, options={
        "target": "aten", "on_error": "raise", "lossy": "test-only-round-each{decimals=1}",
        "calibration": calibration, "accuracy_metric": "relative-error", "accuracy_budget": 0.05})
    with torch.no_grad():
        out = compiled(torch.randint(0, 20, (6,)))
    (report,) = fastc.reports()[before:]
    (record,) = report.lossy
    assert record.loss <= 0.05 and out.shape == (6, 10)
