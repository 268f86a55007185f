"""grouped-kv-attention: SDPA's CPU flash kernel on fewer k / v heads equals it on the repeated
heads (what the pass relies on: masks, causal, several group sizes); a grouped-query attention
module through torch.compile on the cpu target equals eager with the pass and without it."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F

import fastc

FLASH_CPU = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (8, 2), (6, 3), (4, 1)])
@pytest.mark.parametrize("mask", ["none", "additive", "causal"])
def test_the_kernel_reads_grouped_heads_as_repeated_ones(heads, kv_heads, mask):
    torch.manual_seed(0)
    q = torch.randn(2, heads, 5, 8)
    k, v = torch.randn(2, kv_heads, 5, 8), torch.randn(2, kv_heads, 5, 8)
    kwargs = {"scale": 0.3}
    if mask == "additive":
        kwargs["attn_mask"] = torch.randn(2, 1, 5, 5)
    r = heads // kv_heads
    grouped = FLASH_CPU(q, k, v, is_causal=mask == "causal", **kwargs)[0]
    repeated = FLASH_CPU(q, k.repeat_interleave(r, 1), v.repeat_interleave(r, 1), is_causal=mask == "causal",
                         **kwargs)[0]
    torch.testing.assert_close(grouped, repeated, rtol=0, atol=0)


class GroupedAttention(nn.Module):
    def __init__(self, d: int = 32, heads: int = 4, kv_heads: int = 2):
        super().__init__()
        self.h, self.kv, self.dh = heads, kv_heads, d // heads
        self.q, self.o = nn.Linear(d, d), nn.Linear(d, d)
        self.k, self.v = nn.Linear(d, kv_heads * self.dh), nn.Linear(d, kv_heads * self.dh)

    def _repeat(self, t):  # LLaMA's repeat_kv
        b, g, s, d = t.shape
        r = self.h // self.kv
        return t[:, :, None, :, :].expand(b, g, r, s, d).reshape(b, g * r, s, d)

    def forward(self, x):
        b, s, d = x.shape
        q = self.q(x).view(b, s, self.h, self.dh).transpose(1, 2)
        k = self.k(x).view(b, s, self.kv, self.dh).transpose(1, 2)
        v = self.v(x).view(b, s, self.kv, self.dh).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, self._repeat(k), self._repeat(v), is_causal=True)
        return self.o(out.transpose(1, 2).reshape(b, s, d))


def _rewrites(report) -> int:
    return sum(p.rewrites for p in report.passes if p.name == "grouped-kv-attention")


@pytest.mark.parametrize("options", [{}, {"disable": "grouped-kv-attention"}], ids=["pass", "disabled"])
def test_grouped_attention_compiled_equals_eager(options):
    torch.manual_seed(0)
    model, x = GroupedAttention().eval(), torch.randn(2, 6, 32)
    with torch.no_grad():
        expect = model(x)
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="fastc", options={"target": "cpu", "on_error": "raise", **options})
        torch.testing.assert_close(compiled(x), expect, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(compiled(x), expect, rtol=1e-5, atol=1e-5)
    assert _rewrites(fastc.reports()[-1]) == (0 if options else 1)
    torch._dynamo.reset()
