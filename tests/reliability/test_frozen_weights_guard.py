"""Frozen weights belong to the module they were frozen from: other module instances, one
compiled function applied to several modules, replaced parameters and weights changed in place
all run with their own weights (compared with eager), on every CPU-runnable target."""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
import torch.nn as nn

import fastc

TARGETS = ["cpu", "aten", "triton-interpret"]


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4 * 6 * 6, 5)

    def forward(self, x):
        return torch.tanh(self.fc(torch.relu(self.bn(self.conv(x))).flatten(1)))


def _instance(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    m = Block().eval()
    with torch.no_grad():  # BatchNorm statistics that differ between instances
        m.bn.running_mean.uniform_(-1, 1)
        m.bn.running_var.uniform_(0.5, 2)
    return m


def _compile(m, target):
    return torch.compile(m, backend="fastc", options={"target": target, "on_error": "raise"})


def _check(compiled, model, x):
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-4)


X = torch.randn(2, 3, 6, 6)


@pytest.mark.parametrize("target", TARGETS)
def test_two_instances_compiled_separately(target):
    base, tuned = _instance(0), _instance(1)
    cb, ct = _compile(base, target), _compile(tuned, target)
    _check(cb, base, X)
    _check(ct, tuned, X)
    _check(cb, base, X)  # and back


@pytest.mark.parametrize("target", TARGETS)
def test_one_compiled_function_over_an_ensemble(target):
    models = [_instance(s) for s in range(3)]

    @torch.compile(backend="fastc", options={"target": target, "on_error": "raise"})
    def run(m, x):
        return m(x)

    with torch.no_grad():
        for _ in range(2):
            for m in models:
                torch.testing.assert_close(run(m, X), m(X), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target", TARGETS)
def test_parameter_replaced_after_compiling(target):
    m = _instance(0)
    c = _compile(m, target)
    _check(c, m, X)
    m.fc.weight = nn.Parameter(torch.randn_like(m.fc.weight))
    _check(c, m, X)


@pytest.mark.parametrize("target", TARGETS)
def test_weights_changed_in_place_after_compiling(target):
    m = _instance(0)
    c = _compile(m, target)
    _check(c, m, X)
    with torch.no_grad():
        m.conv.weight.mul_(2)
        m.bn.running_var.add_(1)   # a buffer folded into the convolution
    _check(c, m, X)
    with torch.no_grad():
        m.load_state_dict(_instance(5).state_dict())  # copies in place
    _check(c, m, X)


def test_data_assigned_after_compiling():
    m = _instance(0)
    c = _compile(m, "cpu")
    _check(c, m, X)
    m.fc.weight.data = torch.randn_like(m.fc.weight)
    _check(c, m, X)


def test_unchanged_weights_run_the_frozen_graph():
    m = _instance(0)
    before = len(fastc.reports())
    c = _compile(m, "cpu")
    for _ in range(3):
        _check(c, m, X)
    (report,) = fastc.reports()[before:]
    assert report.frozen_inputs > 0 and report.weights_changed is None


def test_other_weights_are_reported_and_compiled_once():
    a, b = _instance(0), _instance(1)
    ca, cb = _compile(a, "cpu"), _compile(b, "cpu")
    _check(ca, a, X)
    before = len(fastc.reports())
    for _ in range(3):
        _check(cb, b, X)
    new = fastc.reports()[before:]
    assert len(new) == 1 and new[0].variant_of is not None  # one unfrozen variant, built once
    frozen = next(r for r in fastc.reports() if r.graph_id == new[0].variant_of)
    assert "another tensor" in frozen.weights_changed


def test_returned_constant_is_a_copy():
    class ReturnsWeight(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(4))

        def forward(self, x):
            return x + 1, self.w * 2  # the second output folds into a constant

    m = ReturnsWeight().eval()
    c = _compile(m, "cpu")
    with torch.no_grad():
        _, w2 = c(torch.zeros(4))
        w2.add_(100)  # the caller owns what it gets
        _, again = c(torch.zeros(4))
    torch.testing.assert_close(again, torch.full((4,), 2.0))


def test_training_then_eval_sees_new_weights():
    m = _instance(0)
    c = _compile(m, "cpu")
    _check(c, m, X)
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.train()
    c(X).sum().backward()
    opt.step()
    m.eval()
    _check(c, m, X)
    assert copy.deepcopy(m) is not None
