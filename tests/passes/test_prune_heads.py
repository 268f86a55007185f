"""prune-heads: the pruned graph computes what the module with those heads removed computes
(separate q/k/v with rotary embeddings and causal SDPA as in the char LM; a fused qkv Linear split
by `split` or by a 5-d view, with softmax written out), constants and node types shrink
consistently, layers whose heads cannot be removed alone are left with a reason, retry halves,
option errors, and the pass through torch.compile on target cpu within the budget."""
from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

import fastc
from fastc.ir import TensorType, node_type
from fastc.passes import PassContext, make_pass
from fastc.passes.attention_heads import head_groups
from fastc_eval.frozen_graph import capture


def _rotary(x, cos, sin):
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class Separate(nn.Module):
    """The char LM's attention: q, k, v Linears, rotary embeddings, causal SDPA, output Linear."""

    def __init__(self, d=32, heads=4, head_dim=8, bias=False):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.wq, self.wk, self.wv = (nn.Linear(d, inner, bias=bias) for _ in range(3))
        self.wo = nn.Linear(inner, d, bias=bias)
        angles = torch.outer(torch.arange(16.0), 1.0 / 100 ** (torch.arange(0, head_dim, 2) / head_dim))
        self.register_buffer("cos", angles.cos())
        self.register_buffer("sin", angles.sin())

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = ((w(x).view(b, t, self.heads, self.head_dim).transpose(1, 2))
                   for w in (self.wq, self.wk, self.wv))
        cos, sin = self.cos[:t], self.sin[:t]
        q, k = _rotary(q, cos, sin), _rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return x + self.wo(y.transpose(1, 2).reshape(b, t, self.heads * self.head_dim))

    def without(self, keep: list[int]) -> "Separate":
        rows = _rows(keep, self.head_dim, self.heads, parts=1)
        m = Separate(self.wq.in_features, len(keep), self.head_dim, bias=self.wq.bias is not None)
        for name in ("wq", "wk", "wv"):
            _copy(getattr(m, name), getattr(self, name).weight[rows], _maybe(getattr(self, name).bias, rows))
        _copy(m.wo, self.wo.weight[:, rows], self.wo.bias)
        return m.eval()


class Fused(nn.Module):
    """One qkv Linear; heads split after `split` (the zoo's attention block) or by a 5-d view
    (the digits ViT); softmax(q k^T / sqrt(hd)) v written out, with or without a causal mask."""

    def __init__(self, d=32, heads=4, head_dim=8, layout="split", causal=True):
        super().__init__()
        self.heads, self.head_dim, self.layout, self.causal = heads, head_dim, layout, causal
        inner = heads * head_dim
        self.qkv, self.proj = nn.Linear(d, 3 * inner), nn.Linear(inner, d)

    def forward(self, x):
        b, t, _ = x.shape
        inner = self.heads * self.head_dim
        if self.layout == "split":
            q, k, v = self.qkv(x).split(inner, dim=-1)
            q, k, v = (z.reshape(b, t, self.heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        else:
            qkv = self.qkv(x).view(b, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_dim)
        if self.causal:
            mask = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            scores = scores.masked_fill(~mask, float("-inf"))
        y = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, t, inner)
        return x + self.proj(y)

    def without(self, keep: list[int]) -> "Fused":
        rows = _rows(keep, self.head_dim, self.heads, parts=3)
        cols = _rows(keep, self.head_dim, self.heads, parts=1)
        m = Fused(self.qkv.in_features, len(keep), self.head_dim, self.layout, self.causal)
        _copy(m.qkv, self.qkv.weight[rows], self.qkv.bias[rows])
        _copy(m.proj, self.proj.weight[:, cols], self.proj.bias)
        return m.eval()


def _rows(keep, head_dim, heads, parts):
    return torch.tensor([(p * heads + h) * head_dim + i for p in range(parts) for h in keep
                         for i in range(head_dim)])


def _maybe(t, rows):
    return None if t is None else t[rows]


def _copy(layer, weight, bias):
    layer.weight.data.copy_(weight)
    if bias is not None:
        layer.bias.data.copy_(bias)


def _batches(shape, n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(*shape, generator=g)] for _ in range(n)]


def _prune(model, x, batches, **options):
    gm = capture(model, (x,))
    p = make_pass("prune-heads", {k: str(v) for k, v in options.items()})
    proposals = p.propose(gm, PassContext(calibration_inputs=batches))
    for q in proposals:
        q.apply(gm)
    gm.graph.lint()
    gm.recompile()
    return gm, proposals


def _kept(proposal) -> list[int]:
    heads = proposal.layer.group.heads
    order = torch.argsort(proposal.layer.scores, stable=True)
    assert proposal.removed < heads
    return sorted(int(h) for h in order[proposal.removed:])


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


MODELS = {
    "separate": lambda: Separate(),
    "separate-bias": lambda: Separate(bias=True),
    "fused-split": lambda: Fused(layout="split"),
    "fused-view": lambda: Fused(layout="view", causal=False),
}


@pytest.mark.parametrize("score", ["output-norm", "magnitude"])
@pytest.mark.parametrize("name", list(MODELS))
def test_equals_the_module_without_those_heads(name, score):
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.randn(2, 6, 32)
    gm, (p,) = _prune(model, x, _batches((2, 6, 32)), fraction=0.5, score=score)
    assert p.removed == 2
    keep = _kept(p)
    pruned = model.without(keep)
    with torch.no_grad():
        torch.testing.assert_close(gm(x)[0], pruned(x))
        other = torch.randn(3, 5, 32)  # symbolic sizes still hold
        torch.testing.assert_close(gm(other)[0], pruned(other))
    inner = 2 * 8
    shapes = sorted(tuple(getattr(gm, n.target).shape) for n in gm.graph.nodes
                    if n.op == "get_attr" and "weight" in n.target)
    if name.startswith("separate"):
        assert shapes == sorted([(inner, 32)] * 3 + [(32, inner)])
    else:
        assert shapes == sorted([(3 * inner, 32), (32, inner)])
    _types_match_values(gm, x)
    _types_match_values(gm, torch.randn(3, 5, 32))


def test_output_norm_keeps_the_heads_that_contribute():
    """Heads 1 and 2 get a tiny output projection: output-norm removes them; their q/k/v rows are
    the largest, so magnitude removes others."""
    torch.manual_seed(0)
    model = Separate().eval()
    with torch.no_grad():
        for h in (1, 2):
            model.wo.weight[:, h * 8:(h + 1) * 8] *= 1e-3
            for w in (model.wq, model.wk, model.wv):
                w.weight[h * 8:(h + 1) * 8] *= 3
    x = torch.randn(2, 6, 32)
    _, (p,) = _prune(model, x, _batches((2, 6, 32)), fraction=0.5, score="output-norm")
    assert _kept(p) == [0, 3]
    _, (m,) = _prune(model, x, _batches((2, 6, 32)), fraction=0.5, score="magnitude")
    assert _kept(m) != [0, 3]


def test_zoo_and_reference_attention_is_recognised():
    from fastc_eval import zoo
    for name in ("attention_block", "attention_block_sdpa"):
        model, inputs = zoo.build(name)
        (g,) = head_groups(capture(model.eval(), tuple(inputs.values())))
        assert g.prunable and g.heads == 4, g.reason
    groups = head_groups(capture(zoo.load("char-lm"), (torch.randint(0, 98, (2, 8)),)))
    assert len(groups) == 6 and all(g.prunable and len(g.producers) == 3 for g in groups)


class GQA(nn.Module):
    """Two key/value heads shared by four query heads."""

    def __init__(self, d=32):
        super().__init__()
        self.wq, self.wo = nn.Linear(d, 32, bias=False), nn.Linear(32, d, bias=False)
        self.wk, self.wv = nn.Linear(d, 16, bias=False), nn.Linear(d, 16, bias=False)

    def forward(self, x):
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, 4, 8).transpose(1, 2)
        k, v = (w(x).view(b, t, 2, 8).transpose(1, 2).repeat_interleave(2, dim=1) for w in (self.wk, self.wv))
        y = F.scaled_dot_product_attention(q, k, v)
        return x + self.wo(y.transpose(1, 2).reshape(b, t, 32))


class PerHeadBias(Fused):
    """ALiBi-like: a constant per head added to the scores."""

    def __init__(self):
        super().__init__(layout="split", causal=False)
        self.register_buffer("slopes", torch.arange(4.0).view(4, 1, 1))

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = self.qkv(x).split(32, dim=-1)
        q, k, v = (z.reshape(b, t, 4, 8).transpose(1, 2) for z in (q, k, v))
        y = ((q @ k.transpose(-2, -1) + self.slopes).softmax(-1) @ v).transpose(1, 2).reshape(b, t, 32)
        return x + self.proj(y)


class HeadsOut(Separate):
    """Returns the attention weights too: the heads reach the graph output."""

    def forward(self, x):
        b, t, _ = x.shape
        q, k, v = ((w(x).view(b, t, 4, 8).transpose(1, 2)) for w in (self.wq, self.wk, self.wv))
        p = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.wo((p @ v).transpose(1, 2).reshape(b, t, 32)), p


@pytest.mark.parametrize("model, reason", [
    (GQA, "(shared key/value heads: grouped-query attention)"),
    (PerHeadBias, "which has a size for each head"),
    (HeadsOut, "the heads reach the graph output"),
])
def test_left_alone_with_a_reason(model, reason):
    torch.manual_seed(0)
    m = model().eval()
    x = torch.randn(2, 6, 32)
    groups = head_groups(capture(m, (x,)))
    assert groups and not any(g.prunable for g in groups)
    assert any(reason in (g.reason or "") for g in groups), [g.reason for g in groups]
    gm, proposals = _prune(m, x, _batches((2, 6, 32)), fraction=0.5)
    assert proposals == []
    with torch.no_grad():
        got, want = gm(x)[0], m(x)
        if model is HeadsOut:
            got, want = got[0], want[0]
        torch.testing.assert_close(got, want)


def test_never_all_heads_and_retry_halves():
    torch.manual_seed(0)
    model = nn.Sequential(Fused(heads=8, head_dim=4), Fused(heads=8, head_dim=4)).eval()
    x = torch.randn(2, 6, 32)
    gm = capture(model, (x,))
    p = make_pass("prune-heads", {"fraction": "0.9"})
    ctx = PassContext(calibration_inputs=_batches((2, 6, 32)))
    proposals = p.propose(gm, ctx)
    assert len(proposals) == 2 and all(q.removed == 7 for q in proposals)
    assert [q.sensitivity for q in proposals] == sorted(q.sensitivity for q in proposals)
    again = p.retry(gm, ctx, proposals[1:])
    assert [q.removed for q in again] == [3]
    assert [q.removed for q in p.retry(gm, ctx, again)] == [1]
    assert p.retry(gm, ctx, p.retry(gm, ctx, again)) == []


@pytest.mark.parametrize("options, message", [
    ({"fraction": "1.5"}, "option fraction=1.5 is not valid (expected a number in (0, 1))"),
    ({"fraction": "0"}, "option fraction=0.0 is not valid"),
    ({"score": "wanda"}, "option score='wanda' is not valid (expected one of output-norm, magnitude)"),
])
def test_option_errors(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_pass("prune-heads", options)


@pytest.fixture
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def test_through_torch_compile_on_cpu_within_the_budget(fresh):
    torch.manual_seed(0)
    model = nn.Sequential(Separate(), Fused(layout="split"), nn.Linear(32, 10)).eval()
    g = torch.Generator().manual_seed(5)
    calibration = [(torch.randn(4, 8, 32, generator=g),) for _ in range(6)]
    budget = 0.5
    compiled = torch.compile(model, backend="fastc", options={
        "lossy": "prune-heads{fraction=0.5}", "calibration": calibration, "target": "cpu",
        "accuracy_budget": budget, "accuracy_metric": "relative-error", "on_error": "raise"})
    before = len(fastc.reports())
    with torch.no_grad():
        out = compiled(calibration[3][0])
    (report,) = fastc.reports()[before:]
    (record,) = report.lossy
    assert record.rewritten and record.weight_bytes_after < record.weight_bytes_before
    assert 0 < record.loss <= budget
    with torch.no_grad():
        want = torch.cat([model(*t) for t in calibration[3:]])
        got = torch.cat([compiled(*t) for t in calibration[3:]])
    assert float((got - want).norm() / want.norm()) == pytest.approx(record.loss, rel=1e-3, abs=1e-5)
    assert out.shape == (4, 8, 10)
