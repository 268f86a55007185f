"""Passes get a context (target, example inputs); a lossy pass runs only when named (the budget
itself: test_lossy_budget.py)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch._dynamo
import torch.nn as nn

import fastc
from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.pass_manager import run_passes
from fastc.passes import Pass, PassContext, output_error, register

SEEN: list[PassContext] = []


@register
@dataclass(frozen=True)
class _Records(Pass):
    """Test-only exact pass: records the context it is handed."""
    name = "test-only-records-context"

    def run(self, gm, ctx):
        SEEN.append(ctx)
        return 0


@register
@dataclass(frozen=True)
class _RoundWeights(Pass):
    """Test-only lossy pass: rounds every constant to `decimals` decimals."""
    name = "test-only-round-weights"
    exact = False
    decimals: int = 1

    def run(self, gm, ctx):
        rounded = 0
        for node in list(gm.graph.nodes):
            if is_constant(node) and constant_value(node).is_floating_point():
                const = add_constant(gm, torch.round(constant_value(node), decimals=self.decimals), before=node)
                node.replace_all_uses_with(const)
                gm.graph.erase_node(node)
                rounded += 1
        return rounded


@pytest.fixture(autouse=True)
def fresh():
    torch._dynamo.reset()
    SEEN.clear()
    yield
    torch._dynamo.reset()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 4)).eval()


def _compile(model, x, **options):
    before = len(fastc.reports())
    with torch.no_grad():
        out = torch.compile(model, backend="fastc", options={"on_error": "raise", **options})(x)
    return out, fastc.reports()[before:]


def test_a_pass_is_handed_target_and_example_inputs():
    x = torch.randn(3, 16)
    _compile(_model(), x, passes="test-only-records-context", target="aten")
    (ctx,) = SEEN
    assert ctx.target == "aten"
    assert any(isinstance(t, torch.Tensor) and torch.equal(t, x) for t in ctx.example_inputs)
    assert ctx.requested == frozenset()  # only lossy passes named in `lossy` are requested


def test_lossy_pass_not_named_is_left_out():
    gm = torch.fx.symbolic_trace(lambda x: x * 2)
    report = fastc.report.GraphReport(0, "inference")
    run_passes(gm, [_RoundWeights()], report, ctx=PassContext(example_inputs=[torch.ones(2)]))
    assert report.passes[0].note == "left out: lossy, not named by the user"


def test_default_pipeline_is_exact():
    from fastc.options import make_options
    from fastc.pipeline import default_pipeline
    for target in ("cpu", "aten"):
        assert all(p.exact for p in default_pipeline(make_options({"target": target})))


def test_output_error_is_one_comparison():
    a = torch.tensor([1.0, float("nan"), float("inf"), 4.0])
    assert output_error([a], [a.clone()]) == 0.0
    assert output_error([a], [torch.tensor([1.0, 0.0, float("inf"), 4.0])]) == float("inf")  # NaN lost
    assert output_error([a], [torch.tensor([1.0, float("nan"), float("inf"), 3.0])]) == pytest.approx(0.25)
