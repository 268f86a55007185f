"""zero-weights: sets every weight to zero (lossy; a check of the accuracy harness)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from .base import Pass, register
from .context import PassContext
from .weight_constants import rewrite_constants, weight_constants


@register
@dataclass(frozen=True)
class ZeroWeights(Pass):
    """Sets every weight to zero: a destructive check that the accuracy harness sees a change.

    Each weight (of a matrix product, convolution or embedding: weight_constants.py) becomes zeros
    of its shape and dtype; biases and normalization stay. Legal on any graph with frozen
    weights, and destructive: the outputs no longer depend on the inputs through any weight
    (`fastc accuracy --passes zero-weights` must report a collapse).
    """
    name = "zero-weights"
    exact = False

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        return rewrite_constants(gm, weight_constants(gm), torch.zeros_like, "zeroed")
