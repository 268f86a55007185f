"""BCQ fit of grouped weights: greedy start, then alternating refinement."""
from typing import Optional

import torch

from .codes import best_codes, greedy_init, group_error, least_squares_scales
from .power_of_two import to_power_of_two_terms


def fit_groups(w: torch.Tensor, bits: int, rounds: int, pow2_terms: Optional[int]):
    """BCQ of grouped weights w (N, G, g): returns codes (bits, N, G, g) and scales (bits, N, G).
    """
    codes, scales = greedy_init(w, bits)
    if pow2_terms is not None:
        scales = to_power_of_two_terms(scales, pow2_terms)
        codes = best_codes(w, scales)
    best_err = group_error(w, codes, scales)
    for _ in range(rounds):
        new_scales = least_squares_scales(w, codes)
        if pow2_terms is not None:
            new_scales = to_power_of_two_terms(new_scales, pow2_terms)
        new_codes = best_codes(w, new_scales)
        err = group_error(w, new_codes, new_scales)
        improved = err < best_err
        if not bool(improved.any()):
            break
        best_err = torch.where(improved, err, best_err)
        codes = torch.where(improved[None, ..., None], new_codes, codes)
        scales = torch.where(improved[None], new_scales, scales)
    return codes, scales
