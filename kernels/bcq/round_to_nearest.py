"""Round-to-nearest (RTN) uniform quantization per group: the baseline BCQ is compared with."""
import torch

from .arguments import check_bits, check_group_size, check_weight


def rtn_dequantized(weight: torch.Tensor, bits: int, group_size: int,
                    symmetric: bool = False) -> torch.Tensor:
    """Quantize `weight` (out x in) to `bits` per group of `group_size` input columns and
    return the dequantized fp32 weight.

    Asymmetric: 2^bits levels from the group's min to its max (scale and integer zero point).
    Symmetric: a mid-rise grid of 2^bits levels +-0.5s, +-1.5s, ... reaching +-max|w|, so every
    code is used and the grid is symmetric about 0; at 1 bit it is {-s, +s} with s = max|w|.
    """
    check_weight(weight)
    check_bits(bits)
    out_features, in_features = weight.shape
    check_group_size(group_size, in_features)
    w = weight.float().reshape(out_features, in_features // group_size, group_size)
    levels = 2 ** bits
    if symmetric:
        if bits == 1:
            scale = w.abs().amax(-1, keepdim=True).clamp(min=1e-12)
            q = torch.where(w >= 0, 1.0, -1.0)
            return (q * scale).reshape(out_features, in_features)
        half = levels // 2
        scale = (w.abs().amax(-1, keepdim=True) / (half - 0.5)).clamp(min=1e-12)
        # Mid-rise grid (+-0.5, +-1.5, ...) uses all 2^bits codes symmetrically.
        q = torch.clamp(torch.floor(w / scale) + 0.5, -half + 0.5, half - 0.5)
        return (q * scale).reshape(out_features, in_features)
    low = w.amin(-1, keepdim=True)
    high = w.amax(-1, keepdim=True)
    scale = ((high - low) / (levels - 1)).clamp(min=1e-12)
    zero = torch.round(-low / scale)
    q = torch.clamp(torch.round(w / scale) + zero, 0, levels - 1)
    return ((q - zero) * scale).reshape(out_features, in_features)
