"""A value in a generated kernel: Triton code with the dtype it computes in, and Python
literals; the Triton dtype of each torch dtype. What the kernel body (body.py) and the op rules
(pointwise_rules.py, reduction_ops.py) build on."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import Unsupported

TL_DTYPES = {
    torch.float32: "tl.float32", torch.float16: "tl.float16", torch.bfloat16: "tl.bfloat16",
    torch.float64: "tl.float64", torch.int64: "tl.int64", torch.int32: "tl.int32",
    torch.int16: "tl.int16", torch.int8: "tl.int8", torch.uint8: "tl.uint8", torch.bool: "tl.int1",
}


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype a value is computed in: fp16 and bf16 compute in fp32."""
    if dtype not in TL_DTYPES:
        raise Unsupported(f"dtype {dtype} in a generated kernel")
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else dtype


@dataclass(frozen=True)
class Value:
    code: str                  # a variable name, an expression or a Python literal
    dtype: torch.dtype | None  # compute dtype; None for a Python literal
    block: bool = True         # varies over the iteration block (else one scalar)


def literal(x) -> Value:
    if isinstance(x, bool):
        return Value(str(x), None, False)
    if isinstance(x, float):
        if math.isnan(x) or math.isinf(x):
            return Value(f'float("{x}")', None, False)
        return Value(repr(x), None, False)
    if isinstance(x, int):
        return Value(str(x), None, False)
    raise Unsupported(f"constant {x!r} of type {type(x).__name__}")
