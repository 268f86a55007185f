"""Triton GEMM kernel for BCQ weights (many rows of x: prefill, batches).

Each program owns a (BLOCK_M, BLOCK_N) tile of y. Per K step it rebuilds the (BLOCK_K, BLOCK_N)
weight tile in registers, sum_i alpha_i * (2 * bit - 1), from the packed words (a K step never
straddles a scale group, so alpha is one vector per plane) and feeds it to tl.dot; the bias is
added before the single store.
"""
import torch
import triton
import triton.language as tl

from .packing import PackedBCQ


@triton.jit
def _bcq_gemm(x_ptr, bits_ptr, scales_ptr, bias_ptr, y_ptr, M, N, K, stride_xm, stride_ym,
              NUM_BITS: tl.constexpr, GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
              X_IS_FP32: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
              BLOCK_K: tl.constexpr):
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < N
    n_words = K // 32
    n_groups = K // GROUP
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + offs_k
        a = tl.load(x_ptr + offs_m[:, None] * stride_xm + ks[None, :],
                    mask=mask_m[:, None] & (ks < K)[None, :], other=0.0)
        group = k0 // GROUP
        w = tl.zeros((BLOCK_K, BLOCK_N), dtype=tl.float32)
        for i in tl.static_range(NUM_BITS):
            words = tl.load(bits_ptr + i * n_words * N + (ks // 32)[:, None] * N + offs_n[None, :],
                            mask=(ks < K)[:, None] & mask_n[None, :], other=0)
            ones = (words >> (ks % 32)[:, None]) & 1
            alpha = tl.load(scales_ptr + i * n_groups * N + group * N + offs_n, mask=mask_n,
                            other=0.0).to(tl.float32)
            w += tl.where(ones != 0, alpha[None, :], -alpha[None, :])
        if X_IS_FP32:
            acc += tl.dot(a, w, input_precision="ieee")
        else:
            acc += tl.dot(a, w.to(a.dtype))
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    out = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])



def gemm(x: torch.Tensor, packed: PackedBCQ, bias, y: torch.Tensor,
         block_m=None, block_n: int = 64) -> torch.Tensor:
    m, k = x.shape
    n = packed.out_features
    if block_m is None:
        block_m = 16 if m <= 16 else (32 if m <= 32 else 64)
    block_k = 64 if packed.group_size % 64 == 0 else 32
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    _bcq_gemm[grid](
        x, packed.bits, packed.scales, bias if bias is not None else y, y, m, n, k,
        x.stride(0), y.stride(0), NUM_BITS=packed.num_bits, GROUP=packed.group_size,
        HAS_BIAS=bias is not None, X_IS_FP32=x.dtype == torch.float32,
        BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k)
    return y
