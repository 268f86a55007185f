"""prune-magnitude: zeroes the smallest-magnitude entries of each weight (lossy)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from .base import Pass, register
from .context import PassContext
from .weight_constants import rewrite_constants, weight_constants


@register
@dataclass(frozen=True)
class PruneMagnitude(Pass):
    """Zeroes the `fraction` smallest-magnitude entries of each weight.

    Weights are those of matrix products, convolutions and embeddings (weight_constants.py), each
    pruned on its own. Legal on any graph with frozen weights; lossy: it changes the outputs, by
    how much depends on the model (on the reference digits-cnn, fraction=0.5 costs most of its
    accuracy, and recalibrate-batchnorm after it wins most of that back). The weights keep their
    shape and dtype: the zeros save memory or time only once a sparse format or kernel uses them.
    """
    name = "prune-magnitude"
    exact = False
    fraction: float = 0.5

    def __post_init__(self):
        if not 0.0 <= self.fraction <= 1.0:
            raise ValueError(f"pass 'prune-magnitude': option fraction={self.fraction!r} is not valid "
                             "(expected a number in [0, 1])")

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        return rewrite_constants(gm, weight_constants(gm), self._prune, "pruned")

    def _prune(self, w: torch.Tensor) -> torch.Tensor | None:
        k = int(round(self.fraction * w.numel()))
        if k == 0:
            return None
        flat = w.flatten().clone()
        flat[flat.abs().argsort(stable=True)[:k]] = 0
        return flat.reshape(w.shape)
