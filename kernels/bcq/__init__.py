"""Shift-add reparameterization of linear weights (ShiftAddLLM-style BCQ).

A weight W (out x in) becomes `bits` binary planes B_i in {-1, +1} with per-group scales alpha_i
(optionally sums of a few powers of two), W ~ sum_i alpha_i B_i, so W x is table look-ups and
additions over the planes plus a scaling per group. See docs/bcq.md.
"""
from .linear import bcq_linear
from .packing import PackedBCQ, dequantize, pack, unpack
from .power_of_two import to_power_of_two_terms
from .bcq_weight import BCQWeight
from .quantize import bcq_quantize
from .reference import reference_linear
from .round_to_nearest import rtn_dequantized
from .storage import load_packed, save_packed
from .torch_op import bcq_linear_cpu, native_max_rows  # registers torch.ops.fastc.bcq_linear

__all__ = ["BCQWeight", "PackedBCQ", "bcq_linear", "bcq_linear_cpu", "bcq_quantize", "dequantize",
           "load_packed", "native_max_rows", "pack", "reference_linear", "rtn_dequantized", "save_packed",
           "to_power_of_two_terms", "unpack"]
