"""Triton GEMV kernels for BCQ weights (few rows of x, e.g. batch-1 decoding).

y[m, n] = sum_i sum_groups alpha_i[group, n] * (B_i x_m)[group, n], read straight from the packed
int32 words; no weight is ever expanded to floats in memory. Two ways to form B_i x:

- sign-select (`gemv_sign`): for a tile of words, each bit selects +x or -x; the sum is
  2 * sum(bit * x) - sum(x).
- look-up table (`gemv_lut`, LUT-GEMM's idea): a first kernel tabulates, for every chunk of 8
  activations, all 256 sums +-x_0 +- ... +- x_7; the second kernel then spends one table read per
  byte of a code word instead of 8 selects and adds.
"""
import torch
import triton
import triton.language as tl

from .packing import WORD_BITS, PackedBCQ


@triton.jit
def _bcq_gemv_sign(x_ptr, bits_ptr, scales_ptr, bias_ptr, y_ptr, N, K, stride_xm, stride_ym,
                   NUM_BITS: tl.constexpr, GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
                   BLOCK_N: tl.constexpr, BLOCK_WORDS: tl.constexpr):
    pid_n = tl.program_id(0)
    m = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    lanes = tl.arange(0, 32)
    word_ids = tl.arange(0, BLOCK_WORDS)
    n_words = K // 32
    n_groups = K // GROUP
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for w0 in range(0, n_words, BLOCK_WORDS):
        words_at = w0 + word_ids
        cols = words_at[:, None] * 32 + lanes[None, :]
        xv = tl.load(x_ptr + m * stride_xm + cols, mask=cols < K, other=0.0).to(tl.float32)
        x_sum = tl.sum(tl.sum(xv, axis=1), axis=0)
        group = (w0 * 32) // GROUP  # a tile of words never straddles a group
        for i in tl.static_range(NUM_BITS):
            word_mask = (words_at[:, None] < n_words) & mask_n[None, :]
            words = tl.load(bits_ptr + i * n_words * N + words_at[:, None] * N + offs_n[None, :],
                            mask=word_mask, other=0)
            ones = (words[:, None, :] >> lanes[None, :, None]) & 1
            picked = tl.sum(tl.sum(tl.where(ones != 0, xv[:, :, None], 0.0), axis=1), axis=0)
            alpha = tl.load(scales_ptr + i * n_groups * N + group * N + offs_n, mask=mask_n,
                            other=0.0).to(tl.float32)
            acc += alpha * (2.0 * picked - x_sum)
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    tl.store(y_ptr + m * stride_ym + offs_n, acc.to(y_ptr.dtype.element_ty), mask=mask_n)


@triton.jit
def _bcq_lut_build(x_ptr, table_ptr, K, n_chunks, stride_xm, BLOCK_C: tl.constexpr):
    pid = tl.program_id(0)
    m = tl.program_id(1)
    chunks = pid * BLOCK_C + tl.arange(0, BLOCK_C)
    entries = tl.arange(0, 256)
    table = tl.zeros((BLOCK_C, 256), dtype=tl.float32)
    for j in tl.static_range(8):
        cols = chunks * 8 + j
        xj = tl.load(x_ptr + m * stride_xm + cols, mask=cols < K, other=0.0).to(tl.float32)
        bit = (entries >> j) & 1
        table += tl.where(bit[None, :] != 0, xj[:, None], -xj[:, None])
    out = table_ptr + m * n_chunks * 256 + chunks[:, None] * 256 + entries[None, :]
    tl.store(out, table, mask=(chunks < n_chunks)[:, None])


@triton.jit
def _bcq_gemv_lut(table_ptr, bits_ptr, scales_ptr, bias_ptr, y_ptr, N, K, stride_ym,
                  NUM_BITS: tl.constexpr, GROUP: tl.constexpr, HAS_BIAS: tl.constexpr,
                  BLOCK_N: tl.constexpr):
    pid_n = tl.program_id(0)
    m = tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = offs_n < N
    n_words = K // 32
    n_groups = K // GROUP
    row_table = table_ptr + m * n_words * 4 * 256
    acc = tl.zeros((BLOCK_N,), dtype=tl.float32)
    for w in range(0, n_words):
        group = (w * 32) // GROUP
        for i in tl.static_range(NUM_BITS):
            word = tl.load(bits_ptr + i * n_words * N + w * N + offs_n, mask=mask_n, other=0)
            part = tl.zeros((BLOCK_N,), dtype=tl.float32)
            for b in tl.static_range(4):
                entry = (word >> (8 * b)) & 255
                part += tl.load(row_table + (w * 4 + b) * 256 + entry, mask=mask_n, other=0.0)
            alpha = tl.load(scales_ptr + i * n_groups * N + group * N + offs_n, mask=mask_n,
                            other=0.0).to(tl.float32)
            acc += alpha * part
    if HAS_BIAS:
        acc += tl.load(bias_ptr + offs_n, mask=mask_n, other=0.0).to(tl.float32)
    tl.store(y_ptr + m * stride_ym + offs_n, acc.to(y_ptr.dtype.element_ty), mask=mask_n)



def gemv_sign(x: torch.Tensor, packed: PackedBCQ, bias, y: torch.Tensor,
              block_n: int = 64) -> torch.Tensor:
    m, k = x.shape
    n = packed.out_features
    words_per_group = packed.group_size // WORD_BITS
    block_words = max(b for b in (1, 2, 4) if words_per_group % b == 0)
    grid = (triton.cdiv(n, block_n), m)
    _bcq_gemv_sign[grid](
        x, packed.bits, packed.scales, bias if bias is not None else y, y, n, k,
        x.stride(0), y.stride(0), NUM_BITS=packed.num_bits, GROUP=packed.group_size,
        HAS_BIAS=bias is not None, BLOCK_N=block_n, BLOCK_WORDS=block_words)
    return y


def gemv_lut(x: torch.Tensor, packed: PackedBCQ, bias, y: torch.Tensor,
             block_n: int = 64, block_c: int = 16) -> torch.Tensor:
    m, k = x.shape
    n = packed.out_features
    n_chunks = (k // WORD_BITS) * 4
    table = torch.empty(m, n_chunks, 256, dtype=torch.float32, device=x.device)
    _bcq_lut_build[(triton.cdiv(n_chunks, block_c), m)](
        x, table, k, n_chunks, x.stride(0), BLOCK_C=block_c)
    _bcq_gemv_lut[(triton.cdiv(n, block_n), m)](
        table, packed.bits, packed.scales, bias if bias is not None else y, y, n, k,
        y.stride(0), NUM_BITS=packed.num_bits, GROUP=packed.group_size,
        HAS_BIAS=bias is not None, BLOCK_N=block_n)
    return y
