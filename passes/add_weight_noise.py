"""add-weight-noise: adds seeded Gaussian noise to each weight (lossy)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.fx as fx

from .base import Pass, register
from .context import PassContext
from .weight_constants import rewrite_constants, weight_constants


@register
@dataclass(frozen=True)
class AddWeightNoise(Pass):
    """Adds seeded Gaussian noise, of std `relative_std` times the weight's std, to each weight.

    Weights are those of matrix products, convolutions and embeddings (weight_constants.py).
    Legal on any graph with frozen weights; lossy by design: it stands in for a rewrite whose
    error looks like noise (quantization, say) when measuring how sensitive a model is. The noise
    comes from a generator seeded with `seed`, drawn weight by weight in graph order, so one seed
    gives one result and the global random state is left alone; the accuracy harness runs it once
    per seed it is given.
    """
    name = "add-weight-noise"
    exact = False
    relative_std: float = 0.05
    seed: int = 0

    def __post_init__(self):
        if not (self.relative_std >= 0 and math.isfinite(self.relative_std)):
            raise ValueError(f"pass 'add-weight-noise': option relative_std={self.relative_std!r} is not "
                             "valid (expected a finite number >= 0)")

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        if self.relative_std == 0:
            return 0
        gen = torch.Generator().manual_seed(self.seed)

        def add_noise(w: torch.Tensor) -> torch.Tensor:
            noise = torch.randn(w.shape, generator=gen, dtype=w.dtype)
            return w + noise.to(w.device) * (self.relative_std * w.std())
        return rewrite_constants(gm, weight_constants(gm), add_noise, "noisy")
