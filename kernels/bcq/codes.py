"""The two steps of binary-coding quantization (BCQ) on grouped weights.

Weights are viewed as groups: `w` has shape (N, G, g) (rows, groups per row, columns per group).
Codes have shape (bits, N, G, g) with entries in {-1, +1}; scales have shape (bits, N, G).
A group is reconstructed as sum_i scales[i] * codes[i].
"""
import itertools

import torch


def greedy_init(w: torch.Tensor, bits: int):
    """Greedy BCQ: each plane takes the sign of the residual and its mean magnitude."""
    residual = w.clone()
    codes, scales = [], []
    for _ in range(bits):
        code = torch.where(residual >= 0, 1.0, -1.0).to(w.dtype)
        scale = residual.abs().mean(-1)
        residual = residual - scale[..., None] * code
        codes.append(code)
        scales.append(scale)
    return torch.stack(codes), torch.stack(scales)


def reconstruct(codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    return (codes * scales[..., None]).sum(0)


def group_error(w: torch.Tensor, codes: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Squared reconstruction error per group, shape (N, G)."""
    return (w - reconstruct(codes, scales)).pow(2).sum(-1)


def least_squares_scales(w: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Scales minimising ||w - sum_i a_i b_i||^2 for fixed codes, solved per group (pinv)."""
    b = codes.double()
    gram = torch.einsum("inkg,jnkg->nkij", b, b)
    rhs = torch.einsum("inkg,nkg->nki", b, w.double())
    solution = (torch.linalg.pinv(gram) @ rhs[..., None])[..., 0]
    return solution.permute(2, 0, 1).to(w.dtype)


def sign_table(bits: int, dtype=torch.float32) -> torch.Tensor:
    """All 2^bits sign vectors, shape (2^bits, bits)."""
    rows = list(itertools.product((-1.0, 1.0), repeat=bits))
    return torch.tensor(rows, dtype=dtype)


def best_codes(w: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """Codes minimising the error for fixed scales: each weight takes the nearest of the
    2^bits values sum_i +-a_i of its group (found by binary search over the sorted values)."""
    bits = scales.shape[0]
    signs = sign_table(bits, w.dtype)
    values = torch.einsum("ci,ink->nkc", signs, scales)
    sorted_values, order = values.sort(dim=-1, stable=True)
    upper = torch.searchsorted(sorted_values.contiguous(), w.contiguous()).clamp(max=values.shape[-1] - 1)
    lower = (upper - 1).clamp(min=0)
    take_lower = (w - sorted_values.gather(-1, lower)).abs() <= \
        (sorted_values.gather(-1, upper) - w).abs()
    nearest = torch.where(take_lower, lower, upper)
    combo = order.gather(-1, nearest)
    return signs[combo].movedim(-1, 0).contiguous()
