"""fuse-product-epilogues and its ops: the rewritten graph equals the graph before the pass (conv
with residual and each activation, linear layers through views, chains of convolutions whose
values may stay channels-last); both implementations of fastc.conv2d_act / fastc.linear_act
equal eager (every activation, residuals, another batch than the packed one, channels-last
inputs, the layouts they return); through torch.compile on the cpu target the ops run, equal
eager, and `disable` keeps them out; the choices object's order and the fallback to ATen when
oneDNN fails."""
from __future__ import annotations

import logging

import pytest
import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F

import fastc
from fastc.codegen import product_calls
from fastc.ir import print_graph
from fastc.kernels import onednn
from fastc.passes import PassContext, make_pass
from fastc_eval.frozen_graph import capture

CONV2D_ACT = torch.ops.fastc.conv2d_act.default
LINEAR_ACT = torch.ops.fastc.linear_act.default

pytestmark = pytest.mark.skipif(onednn.onednn_refusal(torch.float32, torch.device("cpu")) is not None,
                                reason="no oneDNN in this torch build")

ACTIVATION_MODULES = {
    "none": nn.Identity(), "relu": nn.ReLU(), "hardtanh": nn.ReLU6(), "gelu": nn.GELU(),
    "gelu-tanh": nn.GELU(approximate="tanh"), "silu": nn.SiLU(), "sigmoid": nn.Sigmoid(), "tanh": nn.Tanh(),
    "hardswish": nn.Hardswish(),
}


@pytest.fixture
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class ResidualBlock(nn.Module):
    def __init__(self, c: int = 8, act: nn.Module = nn.ReLU()):
        super().__init__()
        self.expand = nn.Conv2d(c, 4 * c, 1)
        self.depthwise = nn.Conv2d(4 * c, 4 * c, 3, padding=1, groups=4 * c)
        self.project = nn.Conv2d(4 * c, c, 1)
        self.act = act

    def forward(self, x):
        h = F.relu6(self.expand(x))
        h = self.act(self.depthwise(h))
        return torch.relu(self.project(h) + x)


class Mlp(nn.Module):
    def __init__(self, d: int = 16, act: nn.Module = nn.GELU()):
        super().__init__()
        self.up, self.down, self.act = nn.Linear(d, 4 * d), nn.Linear(4 * d, d), act

    def forward(self, x):
        return self.down(self.act(self.up(x))) + x


def _rewritten(model, x):
    torch.manual_seed(0)
    gm = capture(model, (x,))
    before = gm(x)[0]
    count = make_pass("fuse-product-epilogues").run(gm, PassContext(target="cpu"))
    return gm, before, count


def _ops(gm, target) -> list:
    return [n for n in gm.graph.nodes if n.target is target]


# -- the pass -------------------------------------------------------------------------------------
def test_residual_block_becomes_three_ops_equal_to_before():
    torch.manual_seed(0)
    x = torch.randn(2, 8, 6, 6)
    gm, before, count = _rewritten(ResidualBlock().eval(), x)
    assert count == 3
    ops = _ops(gm, CONV2D_ACT)
    assert [(n.args[8], n.args[7] is not None, n.args[10]) for n in ops] == [
        ("hardtanh", False, True), ("relu", False, True), ("relu", True, False)], print_graph(gm)
    assert not [n for n in gm.graph.nodes if n.target in (torch.ops.aten.relu.default, torch.ops.aten.add.Tensor)]
    torch.testing.assert_close(gm(x)[0], before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gm(torch.randn(3, 8, 6, 6))[0].shape, torch.Size([3, 8, 6, 6]))


# hardswish is left out: the capture's decompositions spell it as arithmetic.
@pytest.mark.parametrize("act", [a for a in ACTIVATION_MODULES if a != "hardswish"])
def test_each_activation_is_taken_after_a_linear_layer_on_3d_input(act):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 16)
    gm, before, count = _rewritten(Mlp(act=ACTIVATION_MODULES[act]).eval(), x)
    assert count == 2
    assert [n.args[4] for n in _ops(gm, LINEAR_ACT)] == [act, "none"], print_graph(gm)
    torch.testing.assert_close(gm(x)[0], before, rtol=1e-5, atol=1e-5)


def test_leaky_relu_is_not_taken_and_the_graph_still_equals_before():
    torch.manual_seed(0)
    x = torch.randn(4, 16)
    gm, before, _ = _rewritten(Mlp(act=nn.LeakyReLU(0.1)).eval(), x)
    assert [n.args[4] for n in _ops(gm, LINEAR_ACT)] == ["none", "none"]
    assert any("leaky_relu" in str(n.target) for n in gm.graph.nodes)
    torch.testing.assert_close(gm(x)[0], before, rtol=1e-5, atol=1e-5)


def test_non_float32_graphs_are_left_alone():
    model = Mlp().double().eval()
    gm, _, count = _rewritten(model, torch.randn(4, 16, dtype=torch.float64))
    assert count == 0 and not _ops(gm, LINEAR_ACT)


# -- the ops' implementations ---------------------------------------------------------------------
@pytest.mark.parametrize("act", list(onednn.ACTIVATIONS))
@pytest.mark.parametrize("residual", [False, True])
def test_conv_implementations_equal_eager(act, residual):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 6, 7, 7), torch.randn(6, 3, 3, 3), torch.randn(6)
    r = torch.randn(2, 6, 4, 4) if residual else None
    act_args = [0.0, 6.0] if act == "hardtanh" else []
    conv = F.conv2d(x, w, b, stride=2, padding=1, groups=2)
    expect = ACTIVATION_MODULES[act](conv + r if residual else conv)
    packed = onednn.PackedConv(w, [2, 2], [1, 1], [1, 1], 2, x.shape)
    for any_layout in (False, True):
        got_aten = onednn.conv2d_act_aten(x, w, b, [2, 2], [1, 1], [1, 1], 2, r, act, act_args, any_layout)
        got_onednn = packed(x, b, r, act, act_args, any_layout)
        op_args = (x, w, b, [2, 2], [1, 1], [1, 1], 2, r, act, act_args, any_layout)
        bound = [onednn.bind_conv2d_act(kind, w, [2, 2], [1, 1], [1, 1], 2, residual, act, act_args, any_layout,
                                        packed=packed)(*op_args) for kind in ("aten", "onednn")]
        for got in (got_aten, got_onednn, *bound):
            torch.testing.assert_close(got, expect, rtol=1e-5, atol=1e-5)
            assert any_layout or got.is_contiguous()
    # Another batch and a channels-last input than the weight was packed for: same values.
    x2 = torch.randn(3, 6, 7, 7).contiguous(memory_format=torch.channels_last)
    r2 = torch.randn(3, 6, 4, 4) if residual else None
    conv2 = F.conv2d(x2, w, b, stride=2, padding=1, groups=2)
    out = packed(x2, b, r2, act, act_args, False)
    torch.testing.assert_close(out, ACTIVATION_MODULES[act](conv2 + r2 if residual else conv2), rtol=1e-5, atol=1e-5)
    assert out.is_contiguous()


@pytest.mark.parametrize("act", ["none", "relu", "gelu-tanh", "silu"])
@pytest.mark.parametrize("residual", [False, True])
def test_linear_implementations_equal_eager(act, residual):
    torch.manual_seed(0)
    x, w, b = torch.randn(10, 12), torch.randn(20, 12), torch.randn(20)
    r = torch.randn(10, 20) if residual else None
    lin = F.linear(x, w, b)
    expect = ACTIVATION_MODULES[act](lin + r if residual else lin)
    packed = onednn.PackedLinear(w)
    torch.testing.assert_close(onednn.linear_act_aten(x, w, b, r, act, []), expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed(x, b, r, act, []), expect, rtol=1e-5, atol=1e-5)
    for kind in ("aten", "onednn"):
        run = onednn.bind_linear_act(kind, w, residual, act, [], packed=packed)
        torch.testing.assert_close(run(x, w, b, r, act, []), expect, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed(x.t().contiguous().t(), None, r, act, []),
                               ACTIVATION_MODULES[act](F.linear(x, w) + (r if residual else 0)), rtol=1e-5, atol=1e-5)


def test_unknown_activation_names_the_valid_ones():
    with pytest.raises(ValueError, match="unknown activation 'elu' .valid: none, relu, hardtanh"):
        onednn.activation("elu", [])


def test_ops_outside_a_compiled_graph_run_their_aten_ops():
    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 5, 5), torch.randn(4, 4, 1, 1)
    out = CONV2D_ACT(x, w, None, [1, 1], [0, 0], [1, 1], 1, None, "relu", [], False)
    torch.testing.assert_close(out, torch.relu(F.conv2d(x, w)))
    out = LINEAR_ACT(x.reshape(-1, 5), torch.randn(3, 5), None, None, "none", [])
    assert out.shape == (40, 3)


# -- through torch.compile -----------------------------------------------------------------------
# The residual block below would become one block op (fuse-blocks): these tests are about its layers.
PRODUCTS_ONLY = {"target": "cpu", "disable": "fuse-blocks"}

class ConvNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = ResidualBlock(8, nn.SiLU())
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        h = self.block(self.stem(x))
        return self.head(h.mean((2, 3)))


@pytest.mark.parametrize("tuning", ["heuristic", "measure"])
def test_compiled_convnet_equals_eager_and_runs_the_ops(fresh, monkeypatch, tuning):
    monkeypatch.setenv("FASTC_TUNING", tuning)
    torch.manual_seed(0)
    model = ConvNet().eval()
    x = torch.randn(4, 3, 10, 10)
    with torch.no_grad():
        expect = model(x)
        compiled = torch.compile(model, backend="fastc", options=PRODUCTS_ONLY)
        for _ in range(3):
            torch.testing.assert_close(compiled(x), expect, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(compiled(x[:2]), model(x[:2]), rtol=1e-4, atol=1e-5)
    report = fastc.reports()[-1]
    assert report.library_calls and all(n.endswith("_act") for n in report.library_calls)
    picks = {n: p for n, p in report.decisions.items() if n.endswith("_act")}
    assert set(picks.values()) <= {"onednn", "aten"} and len(picks) >= 4
    if tuning == "heuristic":  # the rules' order: oneDNN first for convolutions
        assert all(p == "onednn" for n, p in picks.items() if n.startswith("convolution"))


def test_disable_keeps_the_products_as_aten(fresh):
    torch.manual_seed(0)
    model = ConvNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        compiled = torch.compile(model, backend="fastc",
                                 options={"target": "cpu", "disable": "fuse-blocks,fuse-product-epilogues"})
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    report = fastc.reports()[-1]
    assert not report.library_calls
    assert "fastc.conv2d_act.default" not in report.ops_final


def test_a_failing_onednn_runs_aten_with_the_reason_recorded(fresh, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no primitive for this problem")
    monkeypatch.setattr(onednn, "PackedConv", broken)
    monkeypatch.setenv("FASTC_TUNING", "heuristic")
    torch.manual_seed(0)
    model = ConvNet().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad(), caplog.at_level(logging.WARNING, logger="fastc"):
        compiled = torch.compile(model, backend="fastc", options=PRODUCTS_ONLY)
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    report = fastc.reports()[-1]
    reasons = [r for n, r in report.aten_kernels if n.startswith("convolution")]
    assert reasons and all("no primitive for this problem" in r for r in reasons)
    assert all(p == "aten" for n, p in report.decisions.items() if n.startswith("convolution"))
    assert "runs its ATen ops" in caplog.text


def test_rules_prefer_onednn_for_large_products_only():
    assert product_calls.LinearCall.candidates(512 * 128 * 128)[0] == "onednn"
    assert product_calls.LinearCall.candidates(64 * 32 * 32)[0] == "aten"
    assert product_calls.ConvCall.candidates(1)[0] == "onednn"
