"""How far a rewritten graph's outputs are from the original's: the comparison behind `verify`
(exact passes must stay within rounding). Lossy passes are held to the user's metric instead
(metrics.py).

The error of one output is its largest absolute difference divided by the largest magnitude of
the reference (a relative error of the whole tensor, so zeros in the reference do not blow it
up); NaN and infinities must sit in the same places, else the error is infinite. A graph's error
is the largest over its outputs and input batches.
"""
from __future__ import annotations

import math

import torch

#: What an exact pass may change: rounding (reassociation, a folded constant).
EXACT_TOLERANCE = 1e-4


def tensor_error(expected: torch.Tensor, actual: torch.Tensor) -> float:
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return math.inf
    if not expected.is_floating_point() and not expected.is_complex():
        return 0.0 if torch.equal(expected, actual) else math.inf
    e, a = expected.detach().double(), actual.detach().double()
    if not torch.equal(torch.isnan(e), torch.isnan(a)):
        return math.inf
    inf = torch.isinf(e)
    if not torch.equal(inf, torch.isinf(a)) or not torch.equal(e[inf], a[inf]):
        return math.inf
    finite = torch.isfinite(e)
    if not finite.any():
        return 0.0
    scale = e[finite].abs().max().item()
    diff = (e[finite] - a[finite]).abs().max().item()
    return diff / scale if scale > 0 else diff


def output_error(expected: list, actual: list) -> float:
    """The largest error over the outputs of one run (non-tensor outputs must be equal)."""
    if len(expected) != len(actual):
        return math.inf
    worst = 0.0
    for e, a in zip(expected, actual):
        if isinstance(e, torch.Tensor):
            worst = max(worst, tensor_error(e, a) if isinstance(a, torch.Tensor) else math.inf)
        elif e != a:
            return math.inf
    return worst
