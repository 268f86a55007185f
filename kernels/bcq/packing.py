"""Packed BCQ storage: bit-planes in int32 words, scales in fp16 or fp32.

Layout (chosen so that a block of consecutive output rows reads consecutive memory):
  bits:   int32 (bits, ceil(in / 32), out). Bit j of word w of row n is the code of input column
          32 * w + j: 1 means +1, 0 means -1. Columns past `in_features` are padding (bit 0).
  scales: fp16/fp32 (bits, in / group_size, out).
"""
from dataclasses import dataclass
from typing import Optional

import torch

from .bcq_weight import BCQWeight

WORD_BITS = 32
SCALE_DTYPES = (torch.float16, torch.float32)


@dataclass
class PackedBCQ:
    bits: torch.Tensor
    scales: torch.Tensor
    out_features: int
    in_features: int
    group_size: int
    pow2_terms: Optional[int] = None

    @property
    def num_bits(self) -> int:
        return self.bits.shape[0]

    @property
    def device(self) -> torch.device:
        return self.bits.device

    def to(self, device) -> "PackedBCQ":
        return PackedBCQ(self.bits.to(device), self.scales.to(device), self.out_features,
                         self.in_features, self.group_size, self.pow2_terms)

    def nbytes(self) -> int:
        """Bytes of the packed form (bit words plus scales)."""
        return (self.bits.numel() * self.bits.element_size()
                + self.scales.numel() * self.scales.element_size())

    def fp16_nbytes(self) -> int:
        """Bytes of the same weight stored densely in fp16."""
        return self.out_features * self.in_features * 2


def pack(weight: BCQWeight, scale_dtype: torch.dtype = torch.float16) -> PackedBCQ:
    if scale_dtype not in SCALE_DTYPES:
        raise ValueError(f"scale_dtype must be one of {SCALE_DTYPES}, got {scale_dtype}")
    bits, out_features, in_features = weight.codes.shape
    words = -(-in_features // WORD_BITS)
    ones = torch.zeros(bits, out_features, words * WORD_BITS, dtype=torch.int64)
    ones[:, :, :in_features] = (weight.codes > 0).to(torch.int64)
    ones = ones.reshape(bits, out_features, words, WORD_BITS)
    shifts = torch.arange(WORD_BITS, dtype=torch.int64)
    unsigned = (ones << shifts).sum(-1)
    signed = torch.where(unsigned >= 2 ** 31, unsigned - 2 ** 32, unsigned).to(torch.int32)
    return PackedBCQ(signed.transpose(1, 2).contiguous(),
                     weight.scales.to(scale_dtype).transpose(1, 2).contiguous(),
                     out_features, in_features, weight.group_size, weight.pow2_terms)


def unpack(packed: PackedBCQ) -> BCQWeight:
    words = packed.bits.transpose(1, 2).to(torch.int64) & 0xFFFFFFFF
    shifts = torch.arange(WORD_BITS, dtype=torch.int64, device=words.device)
    ones = (words[..., None] >> shifts) & 1
    ones = ones.reshape(packed.num_bits, packed.out_features, -1)[:, :, :packed.in_features]
    codes = (2 * ones - 1).to(torch.int8)
    scales = packed.scales.float().transpose(1, 2).contiguous()
    return BCQWeight(codes, scales, packed.group_size, packed.pow2_terms)


def dequantize(packed: PackedBCQ) -> torch.Tensor:
    """The fp32 weight (out x in) the packed form stands for."""
    return unpack(packed).dequantize()
