"""`torch.ops.fastc.bcq_linear`: the BCQ linear as a PyTorch custom op, so that graphs (FX,
torch.compile, aot_autograd) carry it as one node with the packed weight as its arguments.

    fastc::bcq_linear(Tensor x, Tensor bits, Tensor scales, Tensor? bias, int group_size,
                      int in_features) -> Tensor

x (..., in_features) -> (..., out_features) in x's dtype, out_features = bits.shape[2]; `bits` and
`scales` are PackedBCQ's tensors (packing.py).

* Fake (meta) implementation: the output shape only, symbolic batch sizes included.
* CPU: `bcq_linear_cpu(kernel="auto")`: the native kernel (cpu_native.py) for fp32 x with at most
  NATIVE_MAX_ROWS rows, dequantize-then-matmul above (the dense weight is rebuilt per call, never
  cached); the pure-PyTorch reference when the native kernel cannot be built (one warning per
  reason in the "fastc" logger).
* CUDA: the Triton kernels (`bcq_linear(..., backend="triton")`).

Importing this module registers the op once; importing it again (or reloading) does not.
"""
from __future__ import annotations

import logging
import threading
from typing import Optional

import torch

from ..custom_ops import registered
from .packing import PackedBCQ, WORD_BITS
from .reference import reference_linear

log = logging.getLogger("fastc")

CPU_KERNELS = ("auto", "native", "dequantize", "reference")

# Rows of x up to which kernel="auto" runs the native kernel on CPU; above it dequantize-then-
# matmul (native W^T builder, then one fp32 ATen GEMM). Measured on a 2-core AMD EPYC (Zen, AVX-512,
# 32 MiB L3; torch 2.13, one thread per measurement because the machine was shared), 3 bits, group
# 128 (ms, native / dequantize+matmul): 2048 x 2048: 16 rows 2.6 / 9.2, 32 rows 9.2 / 10.7,
# 64 rows 14.1 / 13.7, 128 rows 36 / 25; 5632 x 2048: 32 rows 22 / 63, 64 rows 42 / 70,
# 128 rows 80 / 102, 256 rows 205 / 155. Native wins clearly up to 32 rows on both shapes; the
# crossover is 64 rows (2048 wide) to about 200 (5632 wide). bench/bcq_cpu_speed.py prints the
# table with both threads (docs/benchmarks/bcq-cpu.md).
NATIVE_MAX_ROWS = 32

_WARNED: set = set()
_WARN_LOCK = threading.Lock()


def native_max_rows() -> int:
    """Rows of x up to which kernel="auto" uses the native CPU kernel (NATIVE_MAX_ROWS)."""
    return NATIVE_MAX_ROWS


def _warn_once(reason: str) -> None:
    with _WARN_LOCK:
        if reason in _WARNED:
            return
        _WARNED.add(reason)
    log.warning("fastc: native CPU BCQ kernel unavailable (%s); using the PyTorch reference path", reason)


def dequantized_weight_t(bits: torch.Tensor, scales: torch.Tensor, group_size: int,
                         in_features: int) -> torch.Tensor:
    """The fp32 weight transposed, (in, out), rebuilt from the packed tensors plane by plane
    (int32 bit tests, no int64 expansion); equal to dequantize(packed).T."""
    nbits, words, out = bits.shape
    shifts = torch.arange(WORD_BITS, dtype=torch.int32, device=bits.device).view(1, WORD_BITS, 1)
    w_t = torch.zeros(in_features, out, dtype=torch.float32, device=bits.device)
    for i in range(nbits):
        ones = ((bits[i].unsqueeze(1) >> shifts) & 1).reshape(words * WORD_BITS, out)[:in_features]
        signs = ones.to(torch.float32).mul_(2).sub_(1)
        alpha = scales[i].to(torch.float32).repeat_interleave(group_size, dim=0)
        w_t.addcmul_(signs, alpha)
    return w_t


def _weight_t(bits, scales, group_size, in_features) -> torch.Tensor:
    """W^T (in, out) fp32: the native dequantize kernel, else the PyTorch one."""
    from . import cpu_native
    try:
        return cpu_native.native_dequantize_t(bits, scales, group_size, in_features)
    except cpu_native.NativeUnavailable as e:
        _warn_once(f"dequantize: {e}")
        return dequantized_weight_t(bits, scales, group_size, in_features)


def _linear_cpu(x: torch.Tensor, bits: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
                group_size: int, in_features: int, kernel: str = "auto") -> torch.Tensor:
    if kernel not in CPU_KERNELS:
        raise ValueError(f"unknown kernel {kernel!r} (valid: {', '.join(CPU_KERNELS)})")
    out = bits.shape[2]
    rows = x.reshape(-1, in_features)
    if kernel == "auto":
        few = rows.shape[0] <= NATIVE_MAX_ROWS
        kernel = "native" if few and x.dtype == torch.float32 else "dequantize"
        if kernel == "native":
            from . import cpu_native
            try:
                y = cpu_native.native_linear(rows, bits, scales, bias, group_size, in_features)
            except cpu_native.NativeUnavailable as e:
                _warn_once(str(e))
                kernel = "reference"
            else:
                return y.reshape(*x.shape[:-1], out)
    if kernel == "native":
        from . import cpu_native
        y = cpu_native.native_linear(rows, bits, scales, bias, group_size, in_features)
    elif kernel == "dequantize":
        w_t = _weight_t(bits, scales, group_size, in_features)
        xf = rows.to(torch.float32)
        y = torch.addmm(bias.to(torch.float32), xf, w_t) if bias is not None else xf @ w_t
    else:
        packed = PackedBCQ(bits, scales, out, in_features, group_size)
        y = reference_linear(rows, packed, bias)
    return y.to(x.dtype).reshape(*x.shape[:-1], out)


def bcq_linear_cpu(x: torch.Tensor, packed: PackedBCQ, bias: Optional[torch.Tensor] = None,
                   kernel: str = "auto") -> torch.Tensor:
    """y = x @ W^T + bias on CPU for x (..., in_features); result in x's dtype.

    kernel: "native" (the MLIR/LLVM kernel, fp32 x; raises cpu_native.NativeUnavailable when it
    cannot be built), "dequantize" (rebuild the fp32 weight, then one GEMM; not cached),
    "reference" (pure PyTorch, reference.py), or "auto": native for fp32 x with at most
    native_max_rows() rows (the reference path, with one warning, if it cannot be built),
    dequantize otherwise."""
    return _linear_cpu(x, packed.bits, packed.scales, bias, packed.group_size, packed.in_features, kernel)


def bcq_linear_triton(x: torch.Tensor, bits: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
                      group_size: int, in_features: int) -> torch.Tensor:
    """The op's CUDA implementation: the Triton kernels (CPU tensors only in Triton's interpreter)."""
    from .linear import bcq_linear
    packed = PackedBCQ(bits, scales, bits.shape[2], in_features, group_size)
    return bcq_linear(x, packed, bias, backend="triton")


def _register() -> None:
    if registered("bcq_linear"):
        return

    @torch.library.custom_op("fastc::bcq_linear", mutates_args=())
    def bcq_linear_op(x: torch.Tensor, bits: torch.Tensor, scales: torch.Tensor, bias: Optional[torch.Tensor],
                      group_size: int, in_features: int) -> torch.Tensor:
        raise NotImplementedError(f"fastc::bcq_linear has no kernel for device {x.device}")

    @bcq_linear_op.register_fake
    def _fake(x, bits, scales, bias, group_size, in_features):
        torch._check(x.shape[-1] == in_features,
                     lambda: f"fastc::bcq_linear: x has {x.shape[-1]} features, expected {in_features}")
        return x.new_empty((*x.shape[:-1], bits.shape[2]))

    @bcq_linear_op.register_kernel("cpu")
    def _cpu(x, bits, scales, bias, group_size, in_features):
        return _linear_cpu(x, bits, scales, bias, group_size, in_features, "auto")

    @bcq_linear_op.register_kernel("cuda")
    def _cuda(x, bits, scales, bias, group_size, in_features):
        return bcq_linear_triton(x, bits, scales, bias, group_size, in_features)


_register()
