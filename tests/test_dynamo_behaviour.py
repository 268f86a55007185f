"""fastc under Dynamo's ways of calling a backend: graph breaks, recompiles, dynamic shapes,
training, modes, option errors, and registration without `import fastc`.

Every check compares with eager PyTorch.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F

import fastc
import fastc.backend
from model_zoo import MLP, AttentionBlock

OPTIONS = {"on_error": "raise"}


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _reports_since(before: int):
    return fastc.reports()[before:]


def _close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)


class PrintInTheMiddle(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        print("fastc graph-break test: halfway")
        return self.fc2(h)


class DataDependentBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = self.fc1(x)
        if x.sum().item() > 0:  # .item() breaks the graph; each branch is its own graph
            h = torch.tanh(h) * 2
        else:
            h = torch.sigmoid(h) - 1
        return self.fc2(h)


def test_graph_break_on_print_gives_several_correct_graphs(capsys):
    torch.manual_seed(0)
    model = PrintInTheMiddle().eval()
    x = torch.randn(3, 8)
    before = len(fastc.reports())
    with torch.no_grad():
        expected = model(x)
        actual = torch.compile(model, backend="fastc", options=OPTIONS)(x)
    _close(actual, expected)
    assert "halfway" in capsys.readouterr().out
    reports = _reports_since(before)
    assert len(reports) >= 2, f"expected a graph break at print(): {len(reports)} graph(s)"
    assert all(r.fallback is None for r in reports)
    assert sum(r.frozen_inputs for r in reports) > 0


def test_data_dependent_branch_compiles_each_side():
    torch.manual_seed(0)
    model = DataDependentBranch().eval()
    compiled = torch.compile(model, backend="fastc", options=OPTIONS)
    before = len(fastc.reports())
    with torch.no_grad():
        for x in (torch.rand(3, 8) + 0.1, -torch.rand(3, 8) - 0.1, torch.rand(3, 8) + 0.5):
            _close(compiled(x), model(x))
    reports = _reports_since(before)
    # Before the branch, and one graph per side taken after it.
    assert len(reports) >= 3, f"{len(reports)} graph(s)"
    assert all(r.fallback is None for r in reports)


def test_new_shapes_recompile_and_stay_correct():
    torch.manual_seed(0)
    model = AttentionBlock().eval()
    compiled = torch.compile(model, backend="fastc", options=OPTIONS, dynamic=False)
    before = len(fastc.reports())
    shapes = [(2, 8, 32), (3, 5, 32), (1, 12, 32)]
    with torch.no_grad():
        for shape in shapes:
            x = torch.randn(shape)
            _close(compiled(x), model(x))
        _close(compiled(x), model(x))  # a shape seen before: no new graph
    reports = _reports_since(before)
    assert len(reports) == len(shapes), [r.kind for r in reports]


def test_automatic_dynamic_after_a_shape_change():
    torch.manual_seed(0)
    model = MLP().eval()
    compiled = torch.compile(model, backend="fastc", options=OPTIONS)  # dynamic=None: Dynamo decides
    with torch.no_grad():
        for batch in (4, 7, 9, 12):
            x = torch.randn(batch, 16)
            _close(compiled(x), model(x))


@pytest.mark.parametrize("make_model, shapes", [
    (MLP, [(2, 16), (5, 16), (13, 16), (64, 16)]),
    (AttentionBlock, [(2, 4, 32), (3, 9, 32), (5, 16, 32), (2, 7, 32)]),
], ids=["mlp-batch", "attention-batch-and-sequence"])
def test_dynamic_true_one_graph_serves_all_sizes(make_model, shapes):
    torch.manual_seed(0)
    model = make_model().eval()
    compiled = torch.compile(model, backend="fastc", options=OPTIONS, dynamic=True)
    before = len(fastc.reports())
    torch._dynamo.utils.counters.clear()
    with torch.no_grad():
        for shape in shapes:
            x = torch.randn(shape)
            _close(compiled(x), model(x))
    reports = _reports_since(before)
    assert len(reports) == 1, f"{len(reports)} graphs compiled for {len(shapes)} shapes"
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == 1
    assert reports[0].fallback is None and reports[0].frozen_inputs > 0


def test_training_steps_match_eager():
    torch.manual_seed(0)
    model = MLP()
    reference = copy.deepcopy(model)
    compiled = torch.compile(model, backend="fastc", options=OPTIONS)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    before = len(fastc.reports())
    for step in range(3):
        x, target = torch.randn(8, 16), torch.randn(8, 10)
        for m, o in ((compiled, opt), (reference, ref_opt)):
            o.zero_grad()
            loss = F.mse_loss(m(x), target)
            loss.backward()
            o.step()
        for (name, p), r in zip(model.named_parameters(), reference.parameters()):
            _close(p.grad, r.grad)
            _close(p.detach(), r.detach())
    reports = _reports_since(before)
    assert {r.kind for r in reports} == {"forward", "backward"}
    assert all(r.frozen_inputs == 0 for r in reports)
    assert all(r.fallback is None for r in reports)


def test_inference_then_training_on_the_same_compiled_model():
    torch.manual_seed(0)
    model = MLP()
    compiled = torch.compile(model, backend="fastc", options=OPTIONS)
    x = torch.randn(4, 16)
    with torch.no_grad():
        _close(compiled(x), model(x))
    out = compiled(x)  # grad mode changed: a new graph with forward and backward
    out.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for g, p in zip(grads, model.parameters()):
        _close(g, p.grad)


@pytest.mark.parametrize("mode", ["max-autotune", "reduce-overhead", "max-autotune-no-cudagraphs"])
def test_mode_is_accepted_and_reaches_fastc(mode, monkeypatch):
    monkeypatch.setenv("FASTC_ON_ERROR", "raise")  # options= cannot go with mode=
    seen = []
    import fastc.capture
    original = fastc.capture.compile_graph

    def recording(gm, example_inputs, opts):
        seen.append(opts.mode)
        return original(gm, example_inputs, opts)

    monkeypatch.setattr(fastc.capture, "compile_graph", recording)
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(4, 16)
    with torch.no_grad():
        _close(torch.compile(model, backend="fastc", mode=mode)(x), model(x))
    assert seen == [mode]


def _root_cause(e: BaseException) -> BaseException:
    """The backend's own error under Dynamo's BackendCompilerFailed."""
    while True:
        inner = getattr(e, "inner_exception", None) or e.__cause__
        if inner is None:
            return e
        e = inner


def test_unknown_option_raises_naming_key_and_choices():
    model = nn.Linear(2, 2)
    compiled = torch.compile(model, backend="fastc", options={"bogus": 1})
    with pytest.raises(Exception) as info:
        compiled(torch.randn(3, 2))
    cause = _root_cause(info.value)
    assert isinstance(cause, ValueError), repr(info.value)
    message = str(cause)
    assert "'bogus'" in message
    assert "valid:" in message
    for key in fastc.Options.keys():
        assert key in message, f"valid option {key!r} missing from: {message}"


def test_invalid_option_value_raises_naming_value_and_choices():
    compiled = torch.compile(nn.Linear(2, 2), backend="fastc", options={"on_error": "explode"})
    with pytest.raises(Exception) as info:
        compiled(torch.randn(3, 2))
    cause = _root_cause(info.value)
    assert isinstance(cause, ValueError), repr(info.value)
    assert "on_error" in str(cause) and "'explode'" in str(cause)
    assert "fallback" in str(cause) and "raise" in str(cause)


def test_invalid_mode_raises_naming_mode_and_choices():
    compiled = torch.compile(nn.Linear(2, 2), backend="fastc", mode="warp-speed")
    with pytest.raises(Exception) as info:
        compiled(torch.randn(3, 2))
    cause = _root_cause(info.value)
    assert isinstance(cause, ValueError), repr(info.value)
    assert "'warp-speed'" in str(cause)
    assert "max-autotune" in str(cause) and "default" in str(cause)


def test_registered_for_a_fresh_interpreter_without_import_fastc():
    script = textwrap.dedent("""
        import sys
        import torch
        import torch._dynamo
        assert "fastc" in torch._dynamo.list_backends(), torch._dynamo.list_backends()
        m = torch.nn.Linear(2, 2)
        x = torch.randn(3, 2)
        with torch.no_grad():
            out = torch.compile(m, backend="fastc")(x)
            torch.testing.assert_close(out, m(x))
        assert "fastc" in sys.modules  # loaded through the entry point
        import fastc
        assert fastc.reports() and fastc.reports()[0].fallback is None
        print("ok")
    """)
    env = dict(os.environ, FASTC_ON_ERROR="raise")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("ok")
