"""round-weights: rounds the constants to a narrower float type's precision (lossy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx as fx

from .base import Pass, register
from .context import PassContext
from .weight_constants import floating_constants, rewrite_constants


@register
@dataclass(frozen=True)
class RoundWeights(Pass):
    """Rounds every floating-point constant to the nearest `dtype` value, keeping its own dtype.

    Every constant wider than `dtype` is rounded: weights, biases, normalization parameters and
    statistics, tables. Legal on any graph with frozen weights; lossy: it costs what storing the
    weights in `dtype` would cost in accuracy (values beyond the range of float16 become inf),
    without changing what the graph computes in. Constants that `dtype` already holds exactly
    (weights stored as fp16) are left alone, so on them it changes nothing.
    """
    name = "round-weights"
    exact = False
    dtype: Literal["float16", "bfloat16"] = "float16"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        narrow = getattr(torch, self.dtype)

        def round_one(value: torch.Tensor) -> torch.Tensor | None:
            if torch.finfo(value.dtype).bits <= torch.finfo(narrow).bits:
                return None
            rounded = value.to(narrow).to(value.dtype)
            return None if torch.equal(rounded, value) else rounded
        return rewrite_constants(gm, floating_constants(gm), round_one, "rounded")
