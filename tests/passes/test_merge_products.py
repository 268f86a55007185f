"""merge-sibling-products: an attention layer's q, k, v projections (with and without biases,
LLaMA's grouped k/v widths) become one product whose column slices feed the rest, equal to eager
through torch.compile on the cpu target with and without the pass; what must stay apart (a
product the graph returns, a view that needs the result contiguous) stays; zoo transformers
equal eager with it."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F

import fastc

@pytest.fixture
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


class Attention(nn.Module):
    def __init__(self, d: int = 32, heads: int = 4, kv_heads: int = 4, bias: bool = True):
        super().__init__()
        self.h, self.kv, self.dh = heads, kv_heads, d // heads
        self.q = nn.Linear(d, d, bias=bias)
        self.k = nn.Linear(d, kv_heads * self.dh, bias=bias)
        self.v = nn.Linear(d, kv_heads * self.dh, bias=bias)
        self.o = nn.Linear(d, d)

    def forward(self, x):
        b, s, d = x.shape
        q = self.q(x).view(b, s, self.h, self.dh).transpose(1, 2)
        k = self.k(x).view(b, s, self.kv, self.dh).transpose(1, 2)
        v = self.v(x).view(b, s, self.kv, self.dh).transpose(1, 2)
        if self.kv != self.h:
            k = k.repeat_interleave(self.h // self.kv, 1)
            v = v.repeat_interleave(self.h // self.kv, 1)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out.transpose(1, 2).reshape(b, s, d)) + x


class ReturnsProjections(nn.Module):
    """Two products of one input, both returned: their layouts are seen, so they stay apart."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 4)

    def forward(self, x):
        return self.a(x), self.b(x)


class FlattensProjection(nn.Module):
    """A projection whose result is flattened (a view that needs it contiguous)."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(8, 8), nn.Linear(8, 8)

    def forward(self, x):
        return self.a(x).view(-1).sum() + self.b(x).relu().sum()


def _compiled(model, x, **options):
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="fastc", options={"target": "cpu", "on_error": "raise", **options})
    with torch.no_grad():
        out = compiled(x)
        again = compiled(x)
    torch.testing.assert_close(out, again, rtol=0, atol=0)
    return out, fastc.reports()[-1]


def _merged(report) -> int:
    return sum(p.rewrites for p in report.passes if p.name == "merge-sibling-products")


@pytest.mark.parametrize("case", [dict(), dict(bias=False), dict(kv_heads=2, bias=False)],
                         ids=["qkv-bias", "qkv-no-bias", "grouped-kv"])
def test_attention_projections_merge_and_equal_eager(fresh, case):
    torch.manual_seed(0)
    model, x = Attention(**case).eval(), torch.randn(2, 6, 32)
    with torch.no_grad():
        expect = model(x)
    out, report = _compiled(model, x)
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    assert _merged(report) == 1
    out, report = _compiled(model, x, disable="merge-sibling-products")
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    assert _merged(report) == 0


@pytest.mark.parametrize("model", [ReturnsProjections(), FlattensProjection()], ids=["returned", "flattened"])
def test_products_whose_layout_matters_stay_apart(fresh, model):
    torch.manual_seed(0)
    model, x = model.eval(), torch.randn(3, 8)
    with torch.no_grad():
        expect = model(x)
    out, report = _compiled(model, x)
    torch.testing.assert_close(out, expect, rtol=1e-5, atol=1e-5)
    assert _merged(report) == 0


@pytest.mark.parametrize("name", ["bert", "vit", "llama"])
def test_zoo_transformers_equal_eager_with_merged_projections(fresh, name):
    from fastc_eval import zoo
    model, inputs = zoo.build(name)
    model.eval()
    with torch.no_grad():
        expect = zoo.main_output(model(**inputs))
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="fastc", options={"target": "cpu", "on_error": "raise"})
        torch.testing.assert_close(zoo.main_output(compiled(**inputs)), expect, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(zoo.main_output(compiled(**inputs)), expect, rtol=1e-4, atol=1e-4)
    assert _merged(fastc.reports()[-1]) >= 2   # one per attention layer
