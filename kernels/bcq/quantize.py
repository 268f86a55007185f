"""Binary-coding quantization (BCQ) of a weight matrix: W ~ sum_i alpha_i * B_i.

Each of `bits` bit-planes B_i is a {-1, +1} matrix shaped like W; each alpha_i holds one scale per
row and group of `group_size` input columns. The plain mode starts greedily and then alternates
least-squares scales (codes fixed) with nearest codes (scales fixed), keeping per group the best
pair seen, so more rounds never raise the reconstruction error. With `pow2_terms` the scales are
sums of at most that many signed powers of two. With `hessian` (X^T X) the error is measured on
the layer output instead (see activation_aware.py).
"""
from typing import Optional

import torch

from . import arguments
from .activation_aware import quantize_activation_aware
from .bcq_weight import BCQWeight
from .fit import fit_groups


def bcq_quantize(weight: torch.Tensor, bits: int, group_size: int = 128, rounds: int = 10,
                 pow2_terms: Optional[int] = None, hessian: Optional[torch.Tensor] = None,
                 damp: float = 0.01) -> BCQWeight:
    """Quantize `weight` (out x in) into `bits` binary planes with per-group scales.

    rounds: alternating refinement rounds after the greedy start (0 = greedy only).
    pow2_terms: if set, every scale is a sum of at most this many signed powers of two.
    hessian: X^T X of calibration inputs (in x in); switches to the activation-aware mode.
    damp: activation-aware only; added to diag(H) as this fraction of its mean.
    """
    arguments.check_weight(weight)
    arguments.check_bits(bits)
    out_features, in_features = weight.shape
    arguments.check_group_size(group_size, in_features)
    arguments.check_rounds(rounds)
    arguments.check_pow2_terms(pow2_terms)
    if hessian is not None:
        arguments.check_hessian(hessian, in_features)
        arguments.check_damp(damp)
        return quantize_activation_aware(weight, hessian, bits, group_size, rounds,
                                         pow2_terms, damp)
    groups = in_features // group_size
    w = weight.detach().float().cpu().reshape(out_features, groups, group_size)
    codes, scales = fit_groups(w, bits, rounds, pow2_terms)
    return BCQWeight(codes.reshape(bits, out_features, in_features).to(torch.int8),
                     scales.contiguous(), group_size, pow2_terms)
