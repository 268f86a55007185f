"""bcq_linear: y = x @ W^T + bias for a packed BCQ weight, on the reference path or in Triton."""
from typing import Optional

import torch

from .packing import WORD_BITS, PackedBCQ
from .reference import reference_linear

BACKENDS = ("auto", "reference", "triton")
KERNELS = (None, "gemv", "gemv_lut", "gemm")
# Up to this many rows of x use the GEMV kernel (each row re-reads the packed weight), more rows
# the GEMM kernel (one tl.dot tile of at least 16 rows). A guess until timed on a GPU.
GEMV_MAX_ROWS = 4


def bcq_linear(x: torch.Tensor, packed: PackedBCQ, bias: Optional[torch.Tensor] = None,
               backend: str = "auto", kernel: Optional[str] = None) -> torch.Tensor:
    """Apply a packed BCQ weight to x (..., in_features); returns (..., out_features) in x's dtype.

    backend: "reference" (pure PyTorch), "triton", or "auto" (Triton for CUDA tensors whose
    group size is a multiple of 32, the reference path otherwise). CPU tensors on the Triton
    backend need Triton's interpreter, i.e. TRITON_INTERPRET=1 set before triton is first
    imported (slow: for tests at tiny shapes).
    kernel: Triton only; None picks GEMV for at most GEMV_MAX_ROWS rows and GEMM above, or force
    "gemv" (sign-select), "gemv_lut" (8-wide look-up tables) or "gemm".
    """
    _check_call(x, packed, bias, backend, kernel)
    rows = x.reshape(-1, packed.in_features)
    if backend == "auto":
        use_triton = (x.is_cuda and packed.group_size % WORD_BITS == 0
                      and x.dtype in (torch.float16, torch.bfloat16, torch.float32))
        backend = "triton" if use_triton and _triton_available() else "reference"
    if backend == "reference":
        y = reference_linear(rows, packed, bias).to(x.dtype)
    else:
        y = _triton_linear(rows.contiguous(), packed, bias, kernel)
    return y.reshape(*x.shape[:-1], packed.out_features)


def _triton_linear(x, packed, bias, kernel):
    if packed.group_size % WORD_BITS != 0:
        raise ValueError(f"the Triton kernels need group_size to be a multiple of {WORD_BITS}, "
                         f"got {packed.group_size}; use backend='reference'")
    if x.dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"the Triton kernels take fp16, bf16 or fp32 inputs, got {x.dtype}")
    import triton
    if not x.is_cuda and not triton.knobs.runtime.interpret:
        raise ValueError(f"x is on {x.device}: the Triton kernels run there only in Triton's "
                         f"interpreter; set TRITON_INTERPRET=1 before triton is first imported, "
                         f"or use backend='reference'")
    from . import triton_gemm, triton_gemv
    y = torch.empty(x.shape[0], packed.out_features, dtype=x.dtype, device=x.device)
    if bias is not None:
        bias = bias.contiguous()
    if kernel is None:
        kernel = "gemv" if x.shape[0] <= GEMV_MAX_ROWS else "gemm"
    if kernel == "gemv":
        return triton_gemv.gemv_sign(x, packed, bias, y)
    if kernel == "gemv_lut":
        return triton_gemv.gemv_lut(x, packed, bias, y)
    return triton_gemm.gemm(x, packed, bias, y)


def _triton_available() -> bool:
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def _check_call(x, packed, bias, backend, kernel) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r} (valid: {', '.join(BACKENDS)})")
    if kernel not in KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} (valid: None, gemv, gemv_lut, gemm)")
    if not isinstance(packed, PackedBCQ):
        raise ValueError(f"packed must be a PackedBCQ (see bcq.pack), got {type(packed).__name__}")
    if x.shape[-1] != packed.in_features:
        raise ValueError(f"x has {x.shape[-1]} features in its last dimension, the packed weight "
                         f"expects in_features={packed.in_features}")
    if x.device != packed.device:
        raise ValueError(f"x is on {x.device} but the packed weight is on {packed.device}; "
                         f"move it with packed.to(x.device)")
    if bias is not None and tuple(bias.shape) != (packed.out_features,):
        raise ValueError(f"bias must have shape ({packed.out_features},), got "
                         f"{tuple(bias.shape)}")
    if backend == "triton" and not _triton_available():
        raise ValueError("backend='triton' needs the triton package; use backend='reference'")
