"""prune-channels: the pruned graph computes what the correspondingly pruned module computes
(an MLP, a SwiGLU block, conv+BN+relu+conv, a transformer block's MLP), constants and node types
shrink consistently, channels that cannot be removed on their own are left with a reason, Wanda
scores and the refit beat magnitude on skewed inputs, retry halves, option errors, and the pass
through torch.compile on target cpu within the budget of a user metric."""
from __future__ import annotations

import copy

import pytest
import torch
import torch._dynamo
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

import fastc
from fastc.ir import TensorType, node_type
from fastc.passes import PassContext, make_pass
from fastc.passes.channel_groups import channel_groups
from fastc_eval.frozen_graph import capture


class MLP(nn.Module):
    def __init__(self, d=16, h=64):
        super().__init__()
        self.up, self.down = nn.Linear(d, h), nn.Linear(h, d)

    def forward(self, x):
        return self.down(F.gelu(self.up(x)))


class SwiGLU(nn.Module):
    def __init__(self, d=16, h=64):
        super().__init__()
        self.gate, self.up = nn.Linear(d, h, bias=False), nn.Linear(d, h, bias=False)
        self.down = nn.Linear(h, d, bias=False)

    def forward(self, x):
        return self.down(F.silu(self.gate(x)) * self.up(x))


class ConvNet(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.conv1, self.bn = nn.Conv2d(3, c, 3, padding=1), nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, 8, 3, padding=1)

    def forward(self, x):
        return self.conv2(F.relu(self.bn(self.conv1(x))))


class Block(nn.Module):
    """Pre-norm transformer block: attention (heads split by views) and a residual MLP."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.o(y)
        return x + self.down(F.gelu(self.up(self.norm2(x))))


def _prune(model, x, batches, **options):
    gm = capture(model, (x,))
    p = make_pass("prune-channels", {k: str(v).lower() for k, v in options.items()})
    proposals = p.propose(gm, PassContext(calibration_inputs=batches))
    for q in proposals:
        q.apply(gm)
    gm.graph.lint()
    gm.recompile()
    return gm, proposals


def _types_match_values(gm: fx.GraphModule, *inputs):
    """Every node's static type dims equal the sizes it computes."""
    class Check(fx.Interpreter):
        def run_node(self, n):
            value = super().run_node(n)
            ty = node_type(n)
            if isinstance(value, torch.Tensor) and isinstance(ty, TensorType):
                assert len(ty.shape) == value.dim(), n.name
                for want, have in zip(ty.shape, value.shape):
                    if isinstance(want, int):
                        assert want == have, f"{n.name}: type {ty} but value {tuple(value.shape)}"
            return value
    with torch.no_grad():
        Check(gm).run(*inputs)


def _linear(weight, bias=None):
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight.data.copy_(weight)
    if bias is not None:
        layer.bias.data.copy_(bias)
    return layer


def _batches(shape, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*shape, generator=g)] for _ in range(n)]


@pytest.mark.parametrize("score", ["wanda", "magnitude"])
def test_mlp_equals_pruned_module(score):
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(3, 5, 16)
    gm, (p,) = _prune(model, x, _batches((3, 5, 16)), sparsity=0.5, score=score)
    assert p.removed == 32 and p.keep.numel() == 32
    keep = p.keep
    pruned = copy.deepcopy(model)
    pruned.up = _linear(model.up.weight[keep], model.up.bias[keep])
    pruned.down = _linear(model.down.weight[:, keep], model.down.bias)
    with torch.no_grad():
        torch.testing.assert_close(gm(x)[0], pruned(x))
    shapes = sorted(tuple(getattr(gm, n.target).shape) for n in gm.graph.nodes if n.op == "get_attr")
    assert shapes == [(16,), (16, 32), (32,), (32, 16)]
    _types_match_values(gm, x)
    _types_match_values(gm, torch.randn(2, 7, 16))  # symbolic sizes still hold


def test_magnitude_keeps_the_largest_channels():
    torch.manual_seed(0)
    model = MLP().eval()
    _, (p,) = _prune(model, torch.randn(2, 3, 16), [], sparsity=0.25, score="magnitude")
    norms = model.up.weight.detach().pow(2).sum(1) + model.down.weight.detach().pow(2).sum(0)
    assert set(p.keep.tolist()) == set(norms.argsort(descending=True)[:48].tolist())


def test_swiglu_gate_and_up_go_together():
    torch.manual_seed(0)
    model = SwiGLU().eval()
    x = torch.randn(2, 6, 16)
    gm, (p,) = _prune(model, x, _batches((2, 6, 16)), sparsity=0.5)
    (group,) = [g for g in channel_groups(capture(model, (x,))) if g.prunable]
    assert len(group.producers) == 2 and len(group.consumers) == 1
    keep = p.keep
    pruned = copy.deepcopy(model)
    pruned.gate, pruned.up = _linear(model.gate.weight[keep]), _linear(model.up.weight[keep])
    pruned.down = _linear(model.down.weight[:, keep])
    with torch.no_grad():
        torch.testing.assert_close(gm(x)[0], pruned(x))
    _types_match_values(gm, x)


def test_conv_bn_relu_conv_equals_pruned_module():
    torch.manual_seed(0)
    model = ConvNet().eval()
    with torch.no_grad():
        model.bn.running_mean.normal_(0, 0.2)
        model.bn.running_var.uniform_(0.5, 1.5)
        model.bn.weight.uniform_(0.5, 1.5)
        model.bn.bias.normal_(0, 0.2)
    x = torch.randn(2, 3, 8, 8)
    gm, (p,) = _prune(model, x, _batches((2, 3, 8, 8)), sparsity=0.5)
    keep = p.keep
    assert keep.numel() == 8
    pruned = copy.deepcopy(model)
    pruned.conv1 = nn.Conv2d(3, 8, 3, padding=1)
    pruned.conv1.weight.data, pruned.conv1.bias.data = model.conv1.weight.data[keep], model.conv1.bias.data[keep]
    pruned.bn = nn.BatchNorm2d(8).eval()
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(pruned.bn, name).data = getattr(model.bn, name).data[keep]
    pruned.conv2 = nn.Conv2d(8, 8, 3, padding=1)
    pruned.conv2.weight.data, pruned.conv2.bias.data = model.conv2.weight.data[:, keep], model.conv2.bias.data
    with torch.no_grad():
        torch.testing.assert_close(gm(x)[0], pruned(x))
    _types_match_values(gm, x)


def test_transformer_block_prunes_only_the_mlp():
    torch.manual_seed(0)
    model = Block().eval()
    x = torch.randn(2, 6, 32)
    groups = channel_groups(capture(model, (x,)))
    prunable = [g for g in groups if g.prunable]
    assert len(prunable) == 1 and prunable[0].size == 128
    reasons = " | ".join(g.reason for g in groups if g.reason)
    assert "residual" in reasons
    gm, (p,) = _prune(model, x, _batches((2, 6, 32)), sparsity=0.5)
    keep = p.keep
    pruned = copy.deepcopy(model)
    pruned.up = _linear(model.up.weight[keep], model.up.bias[keep])
    pruned.down = _linear(model.down.weight[:, keep], model.down.bias)
    with torch.no_grad():
        torch.testing.assert_close(gm(x)[0], pruned(x))
    _types_match_values(gm, x)


class _Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return self.b(x + self.a(x))


class _Concat(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 16), nn.Linear(32, 4)

    def forward(self, x):
        h = self.a(x)
        return self.b(torch.cat([h, h], -1))


class _Grouped(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.dw, self.b = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        return self.b(self.dw(self.a(x)))


class _Flatten(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 1), nn.Linear(8 * 4 * 4, 4)

    def forward(self, x):
        return self.b(self.a(x).flatten(1))


@pytest.mark.parametrize("model, x, reason", [
    (_Residual(), torch.randn(2, 8), "a residual connection"),
    (_Concat(), torch.randn(2, 8), "concatenation"),
    (_Grouped(), torch.randn(2, 3, 4, 4), "grouped convolution"),
    (_Flatten(), torch.randn(2, 3, 4, 4), "splits or merges the channel dimension"),
])
def test_left_alone_with_a_reason(model, x, reason):
    gm = capture(model.eval(), (x,))
    groups = channel_groups(gm)
    assert not any(g.prunable for g in groups)
    assert any(g.reason and reason in g.reason for g in groups)
    before = copy.deepcopy(gm.graph)
    assert make_pass("prune-channels").propose(gm, PassContext(calibration_inputs=[[x]])) == []
    assert str(gm.graph) == str(before)


def _skewed(n=6, rows=64, d=32, seed=2):
    """Inputs whose channels differ in scale by 100x: weight magnitude alone misjudges them."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.logspace(-1, 1, d)[torch.randperm(d, generator=g)]
    return [[torch.randn(rows, d, generator=g) * scale] for _ in range(n)]


class _Deep(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(32, 64), nn.Linear(64, 32)

    def forward(self, x):
        return self.b(self.a(x) * 1.0)  # linear: the hidden channels keep the inputs' skew


def _error(gm, model, batches):
    with torch.no_grad():
        got = torch.cat([gm(*b)[0] for b in batches])
        want = torch.cat([model(*b) for b in batches])
    return float((got - want).norm() / want.norm())


def test_wanda_and_refit_beat_magnitude_on_skewed_inputs():
    torch.manual_seed(0)
    model = _Deep().eval()
    with torch.no_grad():  # each hidden channel reads a few inputs: their scale is its scale
        model.a.weight.mul_((torch.rand(64, 32) < 0.1).float() * 3)
    batches = _skewed()
    fit, held = batches[:3], batches[3:]
    errors = {}
    for name, options in {"magnitude": {"score": "magnitude"}, "wanda": {"score": "wanda"},
                          "refit": {"score": "wanda", "refit": True}}.items():
        gm, _ = _prune(model, held[0][0], fit, sparsity=0.5, **options)
        errors[name] = _error(gm, model, held)
    assert errors["wanda"] < errors["magnitude"]
    assert errors["refit"] < errors["wanda"]


def test_retry_offers_half_the_channels():
    torch.manual_seed(0)
    model = MLP().eval()
    x = torch.randn(2, 3, 16)
    gm = capture(model, (x,))
    p = make_pass("prune-channels", {"sparsity": "0.5"})
    ctx = PassContext(calibration_inputs=_batches((2, 3, 16)))
    (first,) = p.propose(gm, ctx)
    (again,) = p.retry(gm, ctx, [first])
    assert (first.removed, again.removed) == (32, 16)
    (last,) = p.retry(gm, ctx, [again])
    assert last.removed == 8
    assert p.retry(gm, ctx, [last]) == []


@pytest.mark.parametrize("options, message", [
    ({"sparsity": "1.5"}, "option sparsity=1.5 is not valid (expected a number in (0, 1))"),
    ({"sparsity": "0"}, "option sparsity=0.0 is not valid"),
    ({"score": "random"}, "option score='random' is not valid (expected one of wanda, magnitude)"),
    ({"refit": "maybe"}, "option refit='maybe' is not valid (expected true or false)"),
])
def test_option_errors(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_pass("prune-channels", options)


@pytest.fixture
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_through_torch_compile_on_cpu_within_a_user_metric(fresh):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 128), nn.GELU(), nn.Linear(128, 32), nn.GELU(), nn.Linear(32, 10)).eval()
    calibration = [t for (t,) in _batches((64, 32), n=6, seed=5)]
    calibration = [(t,) for t in calibration]
    held_out = calibration[3:]

    def metric(run):  # negative relative error against the model on the held-out inputs
        with torch.no_grad():
            got = torch.cat([run(*t) for t in held_out])
            want = torch.cat([model(*t) for t in held_out])
        return -float((got - want).norm() / want.norm())

    budget = 0.2
    compiled = torch.compile(model, backend="fastc", options={
        "lossy": "prune-channels{sparsity=0.5}", "calibration": calibration, "target": "cpu",
        "accuracy_budget": budget, "accuracy_metric": metric, "on_error": "raise"})
    before = len(fastc.reports())
    with torch.no_grad():
        out = compiled(held_out[0][0])
    (report,) = fastc.reports()[before:]
    (record,) = report.lossy
    assert record.rewritten and record.weight_bytes_after < record.weight_bytes_before
    assert 0 < record.loss <= budget
    assert -metric(compiled) == pytest.approx(record.loss, rel=1e-3, abs=1e-5)
    assert out.shape == (64, 10)
