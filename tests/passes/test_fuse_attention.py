"""fuse-attention: attention spelled out as products and a softmax becomes one
scaled_dot_product_attention, and the graph's outputs stay equal to eager (scale as a product or
a quotient, no scale, an additive mask, q scaled before the product, outputs read through views
that need them contiguous); through torch.compile on every target it equals eager; what it must
not touch (probabilities read elsewhere, a softmax over another dimension, training) stays."""
from __future__ import annotations

import math

import pytest
import torch
import torch._dynamo
import torch.nn as nn

import fastc
from fastc.ir import print_graph
from fastc.passes import PassContext, make_pass
from fastc_eval.frozen_graph import capture

SDPA = torch.ops.aten.scaled_dot_product_attention.default


class Attention(nn.Module):
    """Multi-head self-attention written out by hand, as many user models do."""

    def __init__(self, d: int = 32, heads: int = 4, form: str = "mul", mask: bool = False, flat: bool = False):
        super().__init__()
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.heads, self.form, self.flat = heads, form, flat
        self.mask = nn.Parameter(torch.randn(1, 1, 5, 5), requires_grad=False) if mask else None

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        dh = d // self.heads
        if self.form == "mul":
            s = (q @ k.transpose(-2, -1)) * dh ** -0.5
        elif self.form == "div":
            s = (q @ k.transpose(-2, -1)) / math.sqrt(dh)
        elif self.form == "pre-scaled":
            s = (q * dh ** -0.5) @ k.transpose(-2, -1)
        else:
            s = q @ k.transpose(-2, -1)
        if self.mask is not None:
            s = s + self.mask
        o = s.softmax(-1) @ v
        if self.flat:  # a view of the attention output itself: needs it contiguous
            return o.reshape(b, -1)
        return self.proj(o.transpose(1, 2).reshape(b, n, d))


def _fused(model, x):
    gm = capture(model.eval(), (x,))
    before = gm(x)[0]
    count = make_pass("fuse-attention").run(gm, PassContext())
    make_pass("dead-code").run(gm, PassContext())
    gm.recompile()
    return gm, before, count


@pytest.mark.parametrize("form", ["mul", "div", "pre-scaled", "none"])
@pytest.mark.parametrize("mask", [False, True])
def test_attention_becomes_sdpa_and_equals_before(form, mask):
    torch.manual_seed(0)
    model = Attention(form=form, mask=mask)
    x = torch.randn(2, 5, 32)
    gm, before, count = _fused(model, x)
    assert count == 1, print_graph(gm)
    (sdpa,) = [n for n in gm.graph.nodes if n.target is SDPA]
    expected_scale = 1.0 if form in ("none", "pre-scaled") else 8 ** -0.5
    assert sdpa.kwargs["scale"] == pytest.approx(expected_scale)
    assert (sdpa.args[3] is not None) == mask
    assert not [n for n in gm.graph.nodes if "softmax" in str(n.target) or "bmm" in str(n.target)]
    torch.testing.assert_close(gm(x)[0], before, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gm(x)[0], model(x), rtol=1e-5, atol=1e-5)


def test_an_output_viewed_flat_reads_a_contiguous_copy():
    torch.manual_seed(0)
    model = Attention(flat=True)
    x = torch.randn(2, 5, 32)
    gm, before, count = _fused(model, x)
    assert count == 1
    sdpa = next(n for n in gm.graph.nodes if n.target is SDPA)
    assert [u.target for u in sdpa.users] == [torch.ops.aten.clone.default]
    torch.testing.assert_close(gm(x)[0], before, rtol=1e-5, atol=1e-5)


class KeepsProbabilities(Attention):
    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        p = (q @ k.transpose(-2, -1)).softmax(-1)
        return p @ v, p


class SoftmaxOverQueries(Attention):
    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        return (q @ k.transpose(-2, -1)).softmax(-2) @ v


@pytest.mark.parametrize("cls", [KeepsProbabilities, SoftmaxOverQueries])
def test_left_alone(cls):
    torch.manual_seed(0)
    gm, _, count = _fused(cls(), torch.randn(2, 5, 32))
    assert count == 0 and not [n for n in gm.graph.nodes if n.target is SDPA]


@pytest.fixture
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("target", ["cpu", "aten"])
def test_compiled_attention_equals_eager(fresh, target):
    torch.manual_seed(0)
    model = Attention(mask=True).eval()
    x = torch.randn(3, 5, 32)
    with torch.no_grad():
        compiled = torch.compile(model, backend="fastc", options={"target": target, "on_error": "raise"})
        for _ in range(2):
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    report = fastc.reports()[-1]
    assert report.ops_final.get("aten.scaled_dot_product_attention.default") == 1, report.text()
    assert "aten.bmm.default" not in report.ops_final


def test_training_keeps_its_softmax_and_gradients_match(fresh):
    torch.manual_seed(0)
    model = Attention()
    reference = Attention()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(2, 5, 32)
    compiled = torch.compile(model, backend="fastc", options={"on_error": "raise"})
    compiled(x).sum().backward()
    reference(x).sum().backward()
    for p, r in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(p.grad, r.grad, rtol=1e-4, atol=1e-5)


class HalfMask(Attention):
    """A float16 mask added to float32 scores (eager promotes; SDPA would refuse the mask)."""

    def __init__(self):
        super().__init__(mask=True)
        self.mask = nn.Parameter(torch.randn(1, 1, 5, 5).half(), requires_grad=False)


def test_a_mask_of_another_dtype_is_left_alone():
    torch.manual_seed(0)
    model = HalfMask()
    x = torch.randn(2, 5, 32)
    gm, before, count = _fused(model, x)
    assert count == 0
    torch.testing.assert_close(gm(x)[0], before)
