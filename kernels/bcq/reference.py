"""Pure-PyTorch BCQ linear: the reference the Triton kernels are tested against.

It computes sum_i alpha_i * (B_i x) group by group, the same sum the kernels form, with fp32
accumulation; it does not build the dense weight.
"""
from typing import Optional

import torch

from .packing import WORD_BITS, PackedBCQ


def reference_linear(x: torch.Tensor, packed: PackedBCQ,
                     bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """y = x @ W^T + bias for x (M, in); result in fp32."""
    words = packed.bits.to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(WORD_BITS, dtype=torch.int64, device=words.device)
    ones = (words[:, :, None, :] >> shifts[None, None, :, None]) & 1
    ones = ones.reshape(packed.num_bits, -1, packed.out_features)[:, :packed.in_features]
    signs = (2 * ones - 1).float()  # (bits, in, out)
    groups = packed.in_features // packed.group_size
    signs = signs.reshape(packed.num_bits, groups, packed.group_size, packed.out_features)
    xg = x.float().reshape(x.shape[0], groups, packed.group_size)
    # (bits, M, groups, out): the binary products B_i x per group, then scaled and summed.
    binary = torch.einsum("mgk,igkn->imgn", xg, signs)
    y = (binary * packed.scales.float()[:, None]).sum((0, 2))
    if bias is not None:
        y = y + bias.float()
    return y
