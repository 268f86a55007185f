"""Lossy passes compose: `layer-skip,prune-channels{sparsity=0.5}` in one spec, one budget for both,
held on the held-out inputs (measured here against eager)."""
from __future__ import annotations

import pytest
import torch
import torch._dynamo
import torch.nn as nn

import fastc


class Block(nn.Module):
    def __init__(self, d: int, hidden: int, scale: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up, self.down = nn.Linear(d, hidden), nn.Linear(hidden, d)
        with torch.no_grad():
            self.down.weight.mul_(scale)  # how much the block changes the stream

    def forward(self, x):
        return x + self.down(torch.nn.functional.gelu(self.up(self.norm(x))))


class Stack(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.blocks = nn.ModuleList([Block(32, 128, s) for s in (1.0, 0.02, 1.0, 0.05)])
        self.head = nn.Linear(32, 16)

    def forward(self, x):
        for b in self.blocks:
            x = b(x)
        return self.head(x)


@pytest.fixture(autouse=True)
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.mark.parametrize("target", ["aten", "cpu"])
def test_layer_skip_and_prune_channels_compose_within_one_budget(target):
    model = Stack().eval()
    g = torch.Generator().manual_seed(1)
    calibration = [(torch.randn(16, 32, generator=g),) for _ in range(6)]
    held_out = calibration[3:]
    budget = 0.05
    compiled = torch.compile(model, backend="fastc", options={
        "target": target, "on_error": "raise", "lossy": "layer-skip,prune-channels{sparsity=0.5}",
        "calibration": calibration, "accuracy_metric": "relative-error", "accuracy_budget": budget})
    before = len(fastc.reports())
    with torch.no_grad():
        got = torch.cat([compiled(*t) for t in held_out])
        want = torch.cat([model(*t) for t in held_out])
    (report,) = fastc.reports()[before:]
    skip, prune = report.lossy
    assert skip.name.startswith("layer-skip") and prune.name.startswith("prune-channels")
    measured = float((got - want).norm() / want.norm())
    # One budget for both: the loss after the second pass is against the original graph.
    assert prune.loss == pytest.approx(measured, rel=1e-3, abs=1e-6)
    assert skip.loss <= prune.loss + 1e-9 or prune.rewritten == []
    assert measured <= budget
    # The quiet blocks go first, and the surviving blocks' hidden channels shrink.
    assert skip.rewritten and all(w.startswith(("blocks.1", "blocks.3")) for w in skip.rewritten)
    assert prune.weight_bytes_after < prune.weight_bytes_before
