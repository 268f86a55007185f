"""shift-add through torch.compile: the budget is honoured on held-out inputs, the rewritten
graph gives the same outputs on the aten and native cpu targets, and the cpu target picks the
BCQ implementation per number of rows through the choices object."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn as nn

import fastc
from fastc.costmodel import HeuristicChoices

BCQ = "fastc.bcq_linear.default"


@pytest.fixture(autouse=True)
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 128), nn.GELU(),
                         nn.Linear(128, 10)).eval()


def _calibration(n=8, rows=32):
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(rows, 64, generator=g),) for _ in range(n)]


def _compile(model, **options):
    base = {"lossy": "shift-add{bits=3,rounds=4}", "calibration": _calibration(), "on_error": "raise"}
    return torch.compile(model, backend="fastc", options={**base, **options})


def _run(compiled, x):
    before = len(fastc.reports())
    with torch.no_grad():
        out = compiled(x)
    return out, fastc.reports()[before:]


def test_budget_is_honoured_on_held_out_inputs():
    model = _model()
    held_out = _calibration()[4:]
    budget = 0.1
    compiled = _compile(model, target="aten", accuracy_metric="relative-error", accuracy_budget=budget)
    out, (report,) = _run(compiled, held_out[0][0])
    (record,) = report.lossy
    with torch.no_grad():
        got = torch.cat([compiled(*t) for t in held_out])
        want = torch.cat([model(*t) for t in held_out])
    measured = float((got - want).norm() / want.norm())
    assert record.loss == pytest.approx(measured, rel=1e-4)
    assert 0 < record.loss <= budget
    assert report.ops_final.get(BCQ, 0) == len(record.rewritten) > 0
    assert record.weight_bytes_after < record.weight_bytes_before


def test_budget_zero_keeps_the_model_exact():
    model = _model()
    x = torch.randn(32, 64)
    out, (report,) = _run(_compile(model, target="aten", accuracy_budget=0.0), x)
    with torch.no_grad():
        torch.testing.assert_close(out, model(x))
    assert BCQ not in report.ops_final


@pytest.mark.parametrize("rows", [1, 32])
def test_cpu_target_matches_aten_target_and_chooses_per_problem(rows):
    model = _model()
    calibration = [(torch.randn(rows, 64),) for _ in range(4)]
    x = torch.randn(rows, 64)
    aten_out, _ = _run(_compile(model, target="aten", calibration=calibration), x)
    torch._dynamo.reset()
    cpu_out, (report,) = _run(_compile(model, target="cpu", calibration=calibration), x)
    torch.testing.assert_close(cpu_out, aten_out, rtol=1e-4, atol=1e-4)
    assert report.ops_final.get(BCQ, 0) == 3
    library = [m for m in report.measurements if m.get("kind") == "library"]
    # Each bcq_linear node, measured once at this problem: both implementations timed.
    assert {m["candidate"] for m in library} == {"native", "dequantize"}
    assert sum(m["chosen"] for m in library) == 3


def test_heuristic_choices_take_the_librarys_order():
    model = _model()
    x = torch.randn(2, 64)
    calibration = [(torch.randn(2, 64),) for _ in range(4)]
    out, (report,) = _run(_compile(model, target="cpu", calibration=calibration, choices=HeuristicChoices()), x)
    assert not [m for m in report.measurements if m.get("kind") == "library"]
    torch._dynamo.reset()
    ref, _ = _run(_compile(model, target="aten", calibration=calibration), x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)
