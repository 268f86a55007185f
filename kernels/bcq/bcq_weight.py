"""BCQWeight: the unpacked result of binary-coding quantization."""
from dataclasses import dataclass
from typing import Optional

import torch

from .codes import reconstruct


@dataclass
class BCQWeight:
    """Unpacked BCQ weight. codes: int8 (bits, out, in) in {-1, +1}; scales: fp32
    (bits, out, in // group_size); pow2_terms: None for free scales."""
    codes: torch.Tensor
    scales: torch.Tensor
    group_size: int
    pow2_terms: Optional[int] = None

    @property
    def bits(self) -> int:
        return self.codes.shape[0]

    @property
    def shape(self) -> tuple:
        return tuple(self.codes.shape[1:])

    def dequantize(self) -> torch.Tensor:
        """The fp32 weight sum_i alpha_i * B_i, shape (out, in)."""
        bits, out_features, in_features = self.codes.shape
        groups = in_features // self.group_size
        codes = self.codes.float().reshape(bits, out_features, groups, self.group_size)
        return reconstruct(codes, self.scales.float()).reshape(out_features, in_features)
