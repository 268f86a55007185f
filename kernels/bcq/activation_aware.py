"""Activation-aware BCQ: minimise the layer-output error ||X W^T - X W_q^T|| (GPTQ-style).

H = X^T X comes from calibration inputs. Columns are quantized left to right; at the start of a
group its scales are fitted by plain BCQ on the (already error-corrected) group, then each column
takes its nearest codes and its error, divided by the pivot of the upper Cholesky factor U of
H^-1, is spread over the columns not yet quantized (inside the group at once, over later groups
in one lazy matrix product when the group is done).
"""
from typing import Optional

import torch

from .codes import best_codes
from .bcq_weight import BCQWeight
from .fit import fit_groups


def inverse_hessian_factor(hessian: torch.Tensor, damp: float) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp * mean(diag H) * I)^-1, in float64."""
    h = hessian.detach().double().cpu().clone()
    dead = torch.diagonal(h) == 0
    h[dead, dead] = 1.0
    h += damp * torch.diagonal(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    lower, info = torch.linalg.cholesky_ex(h)
    if int(info) != 0:
        raise ValueError(f"hessian + damp*I is not positive definite (damp={damp}); "
                         f"use a larger damp or more calibration samples")
    return torch.linalg.cholesky(torch.cholesky_inverse(lower), upper=True)


def quantize_activation_aware(weight: torch.Tensor, hessian: torch.Tensor, bits: int,
                              group_size: int, rounds: int, pow2_terms: Optional[int],
                              damp: float) -> BCQWeight:
    out_features, in_features = weight.shape
    w = weight.detach().double().cpu().clone()
    dead = torch.diagonal(hessian.detach().cpu()) == 0
    w[:, dead] = 0.0
    u = inverse_hessian_factor(hessian, damp)
    codes = torch.empty(bits, out_features, in_features, dtype=torch.int8)
    scales = torch.empty(bits, out_features, in_features // group_size, dtype=torch.float32)
    for group, start in enumerate(range(0, in_features, group_size)):
        stop = start + group_size
        block = w[:, start:stop].float()[:, None, :]
        _, group_scales = fit_groups(block, bits, rounds, pow2_terms)
        group_scales = group_scales.double()
        scales[:, :, group] = group_scales[:, :, 0].float()
        errors = torch.zeros(out_features, group_size, dtype=torch.float64)
        for j in range(start, stop):
            column = w[:, j]
            column_codes = best_codes(column[:, None, None], group_scales)
            quantized = (column_codes[:, :, 0, 0] * group_scales[:, :, 0]).sum(0)
            codes[:, :, j] = column_codes[:, :, 0, 0].to(torch.int8)
            error = (column - quantized) / u[j, j]
            w[:, j + 1:stop] -= error[:, None] * u[j, j + 1:stop][None, :]
            errors[:, j - start] = error
        w[:, stop:] -= errors @ u[start:stop, stop:]
    # With pow2_terms, fit_groups already returned power-of-two scales; the codes were chosen
    # for exactly those scales.
    return BCQWeight(codes, scales, group_size, pow2_terms)
