"""Models for `fastc costmodel collect --models bench/costmodel_models.py:FUNCTION`: the same
blocks at many sizes, so that the cost model sees each kernel kind over a range of problems
(the bundled set, `--models bundled`, has each model at one size).

    fastc costmodel collect --models bundled --models bench/costmodel_models.py:sizes --out data/cpu

Each FUNCTION returns (name, module, example inputs tuple) items; `batch` scales the inputs.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastc_eval.models.small import AttentionBlock, ResidualBlock
from fastc_eval.zoo import randomize_batchnorm


class NormMLP(nn.Module):
    """LayerNorm, Linear, GELU, Linear, residual: the pointwise and reduction kernels of a
    transformer's feed-forward half."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm, self.up, self.down = nn.LayerNorm(dim), nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        return x + self.down(F.gelu(self.up(self.norm(x))))


class GatedMLP(nn.Module):
    """RMS norm and a SiLU-gated MLP (LLaMA's feed-forward half)."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(dim) + 0.5)
        self.gate, self.up, self.down = nn.Linear(dim, 2 * dim), nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)

    def forward(self, x):
        h = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.weight
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class Softmax(nn.Module):
    """Scaled, masked softmax over the last dimension, as attention scores get."""

    def forward(self, scores):
        t = scores.shape[-1]
        causal = torch.ones(t, t, dtype=torch.bool).tril()
        return (scores / 8.0).masked_fill(~causal, float("-inf")).softmax(-1)


def sizes(batch: int | None = None):
    """Transformer and CNN blocks at several widths, sequence lengths and image sizes."""
    torch.manual_seed(0)
    b = batch or 4
    for dim in (64, 256, 768):
        for seq in (16, 128):
            yield f"norm_mlp_d{dim}_t{seq}", NormMLP(dim).eval(), (torch.randn(b, seq, dim),)
            yield f"gated_mlp_d{dim}_t{seq}", GatedMLP(dim).eval(), (torch.randn(b, seq, dim),)
    for seq in (32, 128, 512):
        yield f"softmax_t{seq}", Softmax(), (torch.randn(b, 4, seq, seq),)
    for dim, seq in ((32, 16), (128, 64)):
        yield f"attention_d{dim}_t{seq}", AttentionBlock(dim, heads=4).eval(), (torch.randn(b, seq, dim),)
    for channels in (16, 64):
        for image in (16, 56):
            block = randomize_batchnorm(ResidualBlock(channels)).eval()
            yield f"residual_c{channels}_s{image}", block, (torch.randn(b, channels, image, image),)
