"""index-as-view: indexing by constant aranges (HF's attention-mask code) becomes a view, equal to
eager through torch.compile on the cpu target with the pass and without it; BERT's mask is taken."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn as nn

import fastc


class MaskedScores(nn.Module):
    """Scores masked by a padding mask indexed as HF builds 4-D masks."""

    def forward(self, scores, mask):
        b, s = mask.shape
        batch = torch.arange(b)[:, None, None, None]
        kv = torch.arange(s)[None, None, None, :]
        keep = mask.bool()[batch, kv]                       # (b, 1, 1, s)
        return torch.where(keep, scores, torch.finfo(scores.dtype).min).softmax(-1)


def _rewrites(report) -> int:
    return sum(p.rewrites for p in report.passes if p.name == "index-as-view")


@pytest.mark.parametrize("options", [{}, {"disable": "index-as-view"}], ids=["pass", "disabled"])
def test_mask_indexing_compiled_equals_eager(options):
    torch.manual_seed(0)
    scores = torch.randn(2, 3, 4, 4)
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 1, 1]])
    model = MaskedScores()
    expect = model(scores, mask)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="fastc", options={"target": "cpu", "on_error": "raise", **options})
    with torch.no_grad():
        torch.testing.assert_close(compiled(scores, mask), expect, rtol=1e-6, atol=1e-6)
        other = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
        torch.testing.assert_close(compiled(scores, other), model(scores, other), rtol=1e-6, atol=1e-6)
    assert _rewrites(fastc.reports()[-1]) == (0 if options else 1)
    torch._dynamo.reset()


def test_bert_mask_is_a_view_and_equals_eager():
    from fastc_eval import zoo
    model, inputs = zoo.build("bert")
    model.eval()
    inputs["attention_mask"] = torch.ones_like(inputs["attention_mask"])
    inputs["attention_mask"][0, -2:] = 0
    with torch.no_grad():
        expect = zoo.main_output(model(**inputs))
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="fastc", options={"target": "cpu", "on_error": "raise"})
        torch.testing.assert_close(zoo.main_output(compiled(**inputs)), expect, rtol=1e-4, atol=1e-4)
    assert _rewrites(fastc.reports()[-1]) == 1
    torch._dynamo.reset()
