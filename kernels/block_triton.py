"""Whole residual blocks (kernels/blocks.py) as one Triton kernel each.

    triton_block(op, x, *params)   op in convfirst_block / convnext_block / mbconv_block /
                                   mlp_block; params are the custom op's arguments after x;
                                   returns a new tensor like x
    check_supported(op, x_shape, dtype, params)   raises BlockUnsupported (no launch)
    compile_offline(op, x, *params, arch=90)      Triton's real compiler down to cubin, for a GPU
                                                  this machine may not have (tensors may be meta)

Every product is a tl.dot (fp32 accumulation; fp32 operands with input_precision="ieee", so no
tf32), every dimension padded to a power of two >= 16 with masks, and no intermediate of the
block ever reaches global memory:

- mlp_block: one program per BLOCK_M rows of x viewed [M, D]. The rows are loaded and
  normalized in registers (layer: mean / variance; rms), then the hidden dimension is walked in
  chunks of BLOCK_H: h = act(n @ w1[chunk].T + b1) [* (n @ w3[chunk].T + b3)], and
  acc += h @ w2[:, chunk].T. out = x + acc + b2. D is held whole in registers (<= 1024).
- convfirst_block: one program per (tile of BLOCK_P pixels, image). The grouped k x k
  convolution of the tile is a loop over in-group channels and taps with masked gathers (zero
  padding at the borders) into a [C, BLOCK_P] accumulator; then per hidden chunk
  hid = act(We[chunk] @ s + be) ([BLOCK_H, BLOCK_P]) and acc[C, BLOCK_P] += Wp[:, chunk] @ hid.
- convnext_block: the convfirst kernel (constexpr NORM on) with each pixel's channels of s
  normalized in registers before the expansion: mean and biased variance over the C real rows of
  the [BLOCK_C, BLOCK_P] tile (the padded rows masked out), s = (s - mean) * rsqrt(var + eps).
- mbconv_block: one program per (tile of pixels, image). Per hidden chunk, the depthwise k x k
  convolution needs the expanded hidden at the tile's pixels shifted by each tap; it is
  recomputed per tap (expand + act1 at the shifted pixels, zeroed outside the image): k * k
  times the expansion's work, traded for never storing the hidden. Then bd, act2 and the
  projection accumulate into acc[C, BLOCK_P].

Works on CUDA tensors and, with TRITON_INTERPRET=1 set before triton is imported, on CPU tensors
(there bf16 products are widened to fp32: Triton 3.9's interpreter computes bf16 tl.dot wrong).

Limits (BlockUnsupported): mlp feature size <= 1024; conv blocks <= 512 channels, square odd
kernels <= 15, a convfirst / convnext k x k conv that keeps the channel count; one dtype
(fp32 / fp16 / bf16) for x and every parameter; int32 indexing (< 2**31 elements). The
convolution in convfirst_block / convnext_block is scalar FMAs (no tl.dot), so a dense
(groups=1) k x k conv is slow there.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

NORMS = ("none", "layer", "rms")   # kernels.blocks.NORMS (blocks imports this module for its CUDA kernels)
from fastc.kernels.onednn import ACTIVATIONS

OPS = ("convfirst_block", "convnext_block", "mbconv_block", "mlp_block")
ACT_CODES = {"none": 0, "relu": 1, "hardtanh": 2, "gelu": 3, "gelu-tanh": 4, "silu": 5, "sigmoid": 6,
             "tanh": 7, "hardswish": 8}
NORM_CODES = {"none": 0, "layer": 1, "rms": 2}
DTYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
MAX_D = 1024        # mlp_block: the rows are held whole in registers
MAX_C = 512         # conv blocks: the [C, BLOCK_P] accumulators are held in registers
MAX_KSIZE = 15
assert set(ACT_CODES) == set(ACTIVATIONS) and set(NORM_CODES) == set(NORMS)


class BlockUnsupported(ValueError):
    """Why a Triton block kernel cannot run this problem."""


# -- device helpers -----------------------------------------------------------------------------
@triton.jit
def _tanh(v):
    # From exp of a non-positive argument: no overflow, no libdevice (works in the interpreter).
    e = tl.exp(-2.0 * tl.abs(v))
    t = (1.0 - e) / (1.0 + e)
    return tl.where(v < 0, -t, t)


@triton.jit
def _act(v, ACT: tl.constexpr, lo, hi):
    if ACT == 1:
        r = tl.maximum(v, 0.0)
    elif ACT == 2:
        r = tl.minimum(tl.maximum(v, lo), hi)
    elif ACT == 3:
        r = 0.5 * v * (1.0 + tl.erf(v * 0.7071067811865476))
    elif ACT == 4:
        r = 0.5 * v * (1.0 + _tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))
    elif ACT == 5:
        r = v / (1.0 + tl.exp(-v))
    elif ACT == 6:
        r = 1.0 / (1.0 + tl.exp(-v))
    elif ACT == 7:
        r = _tanh(v)
    elif ACT == 8:
        r = v * (tl.minimum(tl.maximum(v + 3.0, 0.0), 6.0) / 6.0)
    else:
        r = v
    return r


@triton.jit
def _dot(a, b, DOT: tl.constexpr):
    # DOT 0: the operands' own dtype (fp16 / bf16 tensor cores); 1: fp32 without tf32;
    # 2: bf16 operands widened to fp32 first (Triton 3.9's interpreter computes bf16 tl.dot wrong).
    if DOT == 1:
        r = tl.dot(a, b, input_precision="ieee")
    elif DOT == 2:
        r = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        r = tl.dot(a, b)
    return r


# -- mlp_block ----------------------------------------------------------------------------------
@triton.jit
def _mlp_block_kernel(x_ptr, nw_ptr, nb_ptr, w1_ptr, b1_ptr, w3_ptr, b3_ptr, w2_ptr, b2_ptr, y_ptr,
                      M, D, HID, eps, lo, hi,
                      NORM: tl.constexpr, HAS_NW: tl.constexpr, HAS_NB: tl.constexpr,
                      HAS_B1: tl.constexpr, HAS_W3: tl.constexpr, HAS_B3: tl.constexpr,
                      HAS_B2: tl.constexpr, ACT: tl.constexpr, DOT: tl.constexpr,
                      BLOCK_M: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_H: tl.constexpr):
    pid = tl.program_id(0)
    offs_m = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask_m = offs_m < M
    mask_d = offs_d < D
    mask = mask_m[:, None] & mask_d[None, :]
    x = tl.load(x_ptr + offs_m[:, None] * D + offs_d[None, :], mask=mask, other=0.0).to(tl.float32)
    if NORM == 1:
        mean = tl.sum(x, axis=1) / D
        xc = tl.where(mask, x - mean[:, None], 0.0)
        var = tl.sum(xc * xc, axis=1) / D
        n = xc * tl.rsqrt(var + eps)[:, None]
        if HAS_NW:
            n = n * tl.load(nw_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :]
        if HAS_NB:
            n = n + tl.load(nb_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    elif NORM == 2:
        ms = tl.sum(x * x, axis=1) / D
        n = x * tl.rsqrt(ms + eps)[:, None]
        if HAS_NW:
            n = n * tl.load(nw_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    else:
        n = x
    n = n.to(y_ptr.dtype.element_ty)

    acc = tl.zeros((BLOCK_M, BLOCK_D), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < HID
        w_mask = mask_d[:, None] & mask_h[None, :]
        w1t = tl.load(w1_ptr + offs_h[None, :] * D + offs_d[:, None], mask=w_mask, other=0.0)
        h = _dot(n, w1t, DOT)                                         # [BLOCK_M, BLOCK_H]
        if HAS_B1:
            h += tl.load(b1_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)[None, :]
        h = _act(h, ACT, lo, hi)
        if HAS_W3:
            w3t = tl.load(w3_ptr + offs_h[None, :] * D + offs_d[:, None], mask=w_mask, other=0.0)
            g = _dot(n, w3t, DOT)
            if HAS_B3:
                g += tl.load(b3_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)[None, :]
            h = h * g
        w2t = tl.load(w2_ptr + offs_d[None, :] * HID + offs_h[:, None],
                      mask=mask_h[:, None] & mask_d[None, :], other=0.0)   # [BLOCK_H, BLOCK_D]
        acc += _dot(h.to(y_ptr.dtype.element_ty), w2t, DOT)
    out = x + acc
    if HAS_B2:
        out += tl.load(b2_ptr + offs_d, mask=mask_d, other=0.0).to(tl.float32)[None, :]
    tl.store(y_ptr + offs_m[:, None] * D + offs_d[None, :], out.to(y_ptr.dtype.element_ty), mask=mask)


# -- convfirst_block ----------------------------------------------------------------------------
@triton.jit
def _convfirst_block_kernel(x_ptr, ws_ptr, bs_ptr, we_ptr, be_ptr, wp_ptr, bp_ptr, y_ptr,
                            C, H, W, HID, eps, lo, hi,
                            CPG: tl.constexpr, OPG: tl.constexpr, KSIZE: tl.constexpr, NORM: tl.constexpr,
                            HAS_BS: tl.constexpr, HAS_BE: tl.constexpr, HAS_BP: tl.constexpr,
                            ACT: tl.constexpr, DOT: tl.constexpr, BLOCK_C: tl.constexpr,
                            BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr):
    pid_p = tl.program_id(0)
    img = tl.program_id(1)
    HW = H * W
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < HW
    ph = offs_p // W
    pw = offs_p % W
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    x_img = x_ptr + img * C * HW
    cin0 = (offs_c // OPG) * CPG            # first input channel of each output channel's group
    PAD: tl.constexpr = KSIZE // 2
    TAPS: tl.constexpr = KSIZE * KSIZE

    # the grouped k x k convolution of the tile: [C, BLOCK_P], fp32
    s = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    for j in range(CPG):
        for t in range(TAPS):
            ih = ph + (t // KSIZE - PAD)
            iw = pw + (t % KSIZE - PAD)
            valid = mask_p & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            xv = tl.load(x_img + (cin0 + j)[:, None] * HW + (ih * W + iw)[None, :],
                         mask=mask_c[:, None] & valid[None, :], other=0.0).to(tl.float32)
            wv = tl.load(ws_ptr + offs_c * (CPG * TAPS) + (j * TAPS + t), mask=mask_c, other=0.0)
            s += wv.to(tl.float32)[:, None] * xv
    if HAS_BS:
        s += tl.load(bs_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[:, None]
    if NORM:
        # convnext_block: each pixel's C channels to mean 0, variance 1 (biased, as layer_norm);
        # the padded channel rows stay out of both sums and come out zero.
        mean = tl.sum(s, axis=0) / C                 # padded rows of s are zero
        sc = tl.where(mask_c[:, None], s - mean[None, :], 0.0)
        var = tl.sum(sc * sc, axis=0) / C
        s = sc * tl.rsqrt(var + eps)[None, :]
    s_op = s.to(y_ptr.dtype.element_ty)

    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < HID
        we_t = tl.load(we_ptr + offs_h[:, None] * C + offs_c[None, :],
                       mask=mask_h[:, None] & mask_c[None, :], other=0.0)      # [BLOCK_H, BLOCK_C]
        hid = _dot(we_t, s_op, DOT)                                           # [BLOCK_H, BLOCK_P]
        if HAS_BE:
            hid += tl.load(be_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)[:, None]
        hid = _act(hid, ACT, lo, hi)
        wp_t = tl.load(wp_ptr + offs_c[:, None] * HID + offs_h[None, :],
                       mask=mask_c[:, None] & mask_h[None, :], other=0.0)      # [BLOCK_C, BLOCK_H]
        acc += _dot(wp_t, hid.to(y_ptr.dtype.element_ty), DOT)

    io = offs_c[:, None] * HW + offs_p[None, :]
    io_mask = mask_c[:, None] & mask_p[None, :]
    out = tl.load(x_img + io, mask=io_mask, other=0.0).to(tl.float32) + acc
    if HAS_BP:
        out += tl.load(bp_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[:, None]
    tl.store(y_ptr + img * C * HW + io, out.to(y_ptr.dtype.element_ty), mask=io_mask)


# -- mbconv_block -------------------------------------------------------------------------------
@triton.jit
def _mbconv_block_kernel(x_ptr, we_ptr, be_ptr, wd_ptr, bd_ptr, wp_ptr, bp_ptr, y_ptr,
                         C, H, W, HID, lo1, hi1, lo2, hi2,
                         KSIZE: tl.constexpr, HAS_BE: tl.constexpr, HAS_BD: tl.constexpr,
                         HAS_BP: tl.constexpr, ACT1: tl.constexpr, ACT2: tl.constexpr,
                         DOT: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                         BLOCK_H: tl.constexpr):
    pid_p = tl.program_id(0)
    img = tl.program_id(1)
    HW = H * W
    offs_p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
    mask_p = offs_p < HW
    ph = offs_p // W
    pw = offs_p % W
    offs_c = tl.arange(0, BLOCK_C)
    mask_c = offs_c < C
    x_img = x_ptr + img * C * HW
    PAD: tl.constexpr = KSIZE // 2
    TAPS: tl.constexpr = KSIZE * KSIZE

    acc = tl.zeros((BLOCK_C, BLOCK_P), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        offs_h = h0 + tl.arange(0, BLOCK_H)
        mask_h = offs_h < HID
        we_t = tl.load(we_ptr + offs_h[:, None] * C + offs_c[None, :],
                       mask=mask_h[:, None] & mask_c[None, :], other=0.0)      # [BLOCK_H, BLOCK_C]
        if HAS_BE:
            be = tl.load(be_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)
        else:
            be = tl.zeros((BLOCK_H,), dtype=tl.float32)
        d = tl.zeros((BLOCK_H, BLOCK_P), dtype=tl.float32)
        for t in range(TAPS):
            ih = ph + (t // KSIZE - PAD)
            iw = pw + (t % KSIZE - PAD)
            valid = mask_p & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)
            xs = tl.load(x_img + offs_c[:, None] * HW + (ih * W + iw)[None, :],
                         mask=mask_c[:, None] & valid[None, :], other=0.0)     # [BLOCK_C, BLOCK_P]
            e = _dot(we_t, xs, DOT) + be[:, None]                             # [BLOCK_H, BLOCK_P]
            e = _act(e, ACT1, lo1, hi1)
            e = tl.where(valid[None, :], e, 0.0)       # the depthwise conv's zero padding
            wd = tl.load(wd_ptr + offs_h * TAPS + t, mask=mask_h, other=0.0).to(tl.float32)
            d += wd[:, None] * e
        if HAS_BD:
            d += tl.load(bd_ptr + offs_h, mask=mask_h, other=0.0).to(tl.float32)[:, None]
        d = _act(d, ACT2, lo2, hi2)
        wp_t = tl.load(wp_ptr + offs_c[:, None] * HID + offs_h[None, :],
                       mask=mask_c[:, None] & mask_h[None, :], other=0.0)      # [BLOCK_C, BLOCK_H]
        acc += _dot(wp_t, d.to(y_ptr.dtype.element_ty), DOT)

    io = offs_c[:, None] * HW + offs_p[None, :]
    io_mask = mask_c[:, None] & mask_p[None, :]
    out = tl.load(x_img + io, mask=io_mask, other=0.0).to(tl.float32) + acc
    if HAS_BP:
        out += tl.load(bp_ptr + offs_c, mask=mask_c, other=0.0).to(tl.float32)[:, None]
    tl.store(y_ptr + img * C * HW + io, out.to(y_ptr.dtype.element_ty), mask=io_mask)


# -- checks -------------------------------------------------------------------------------------
def _shape(t):
    return None if t is None else tuple(t.shape)


def _pow2(n: int, least: int = 16) -> int:
    return max(least, triton.next_power_of_2(int(n)))


def _check_act(act, act_args, what: str) -> None:
    if act not in ACT_CODES:
        raise BlockUnsupported(f"{what}: unknown activation {act!r} (valid: {', '.join(ACT_CODES)})")
    want = 2 if act == "hardtanh" else 0
    if len(act_args) != want:
        raise BlockUnsupported(f"{what}: activation {act!r} takes {want} arguments, got {list(act_args)}")


def _act_scalars(act, act_args) -> tuple[float, float]:
    return (float(act_args[0]), float(act_args[1])) if act == "hardtanh" else (0.0, 0.0)


def _check_tensor(name, t, dtype, shape) -> None:
    if t is None:
        return
    if not isinstance(t, torch.Tensor):
        raise BlockUnsupported(f"{name} is a {type(t).__name__}, not a tensor")
    if t.dtype != dtype:
        raise BlockUnsupported(f"{name} has dtype {t.dtype}, x has {dtype}: the block kernels take one dtype")
    if tuple(t.shape) != tuple(shape):
        raise BlockUnsupported(f"{name} has shape {tuple(t.shape)}, expected {tuple(shape)}")


def _check_1x1(name, w) -> None:
    if not isinstance(w, torch.Tensor) or w.dim() != 4 or tuple(w.shape[2:]) != (1, 1):
        raise BlockUnsupported(f"{name} has shape {_shape(w)}: expected a 1x1 convolution weight (out, in, 1, 1)")


def check_supported(op: str, x_shape, dtype: torch.dtype, params) -> None:
    """Raises BlockUnsupported (with the reason) when the Triton block kernel for `op` cannot run
    x of `x_shape` and `dtype` with the op's other arguments `params`; launches nothing."""
    x_shape = tuple(int(s) for s in x_shape)
    if op not in OPS:
        raise BlockUnsupported(f"unknown block op {op!r} (valid: {', '.join(OPS)})")
    if dtype not in DTYPES:
        raise BlockUnsupported(f"dtype {dtype}: the Triton block kernels take float32, float16 and bfloat16")
    numel = 1
    for s in x_shape:
        numel *= s
    if numel >= 2 ** 31:
        raise BlockUnsupported(f"x has {numel} elements: the kernels index with int32")
    params = list(params)
    if op == "mlp_block":
        if len(params) != 12:
            raise BlockUnsupported(f"mlp_block takes 12 arguments after x, got {len(params)}")
        norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2 = params
        if len(x_shape) < 1:
            raise BlockUnsupported("mlp_block: x needs a last (feature) dimension")
        d = x_shape[-1]
        if d > MAX_D:
            raise BlockUnsupported(f"mlp_block: feature size {d} > {MAX_D} (rows are held whole in registers)")
        if norm not in NORM_CODES:
            raise BlockUnsupported(f"mlp_block: unknown norm {norm!r} (valid: {', '.join(NORM_CODES)})")
        _check_act(act, act_args, "mlp_block")
        if not isinstance(w1, torch.Tensor) or not isinstance(w2, torch.Tensor) or w1.dim() != 2:
            raise BlockUnsupported(f"mlp_block: w1 {_shape(w1)} and w2 {_shape(w2)} must be (out, in) matrices")
        hid = w1.shape[0]
        if hid == 0:
            raise BlockUnsupported("mlp_block: empty hidden dimension")
        _check_tensor("w1", w1, dtype, (hid, d))
        _check_tensor("b1", b1, dtype, (hid,))
        _check_tensor("w3", w3, dtype, (hid, d))
        if w3 is None and b3 is not None:
            raise BlockUnsupported("mlp_block: b3 without w3")
        _check_tensor("b3", b3, dtype, (hid,))
        _check_tensor("w2", w2, dtype, (d, hid))
        _check_tensor("b2", b2, dtype, (d,))
        if norm != "none":
            _check_tensor("norm_w", norm_w, dtype, (d,))
        if norm == "layer":
            _check_tensor("norm_b", norm_b, dtype, (d,))
        return

    if len(x_shape) != 4:
        raise BlockUnsupported(f"{op}: x has shape {x_shape}, expected NCHW")
    n, c, h, w = x_shape
    if c > MAX_C:
        raise BlockUnsupported(f"{op}: {c} channels > {MAX_C} (the [C, pixels] accumulators live in registers)")
    if n > 65535:
        raise BlockUnsupported(f"{op}: batch {n} > 65535 (grid axis 1)")
    if op in ("convfirst_block", "convnext_block"):
        want = 9 if op == "convfirst_block" else 10
        if len(params) != want:
            raise BlockUnsupported(f"{op} takes {want} arguments after x, got {len(params)}")
        if op == "convnext_block":
            ws, bs, groups, eps, we, be, act, act_args, wp, bp = params
            if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0.0:
                raise BlockUnsupported(f"convnext_block: eps {eps!r} is not a non-negative number")
        else:
            ws, bs, groups, we, be, act, act_args, wp, bp = params
        if not isinstance(ws, torch.Tensor) or ws.dim() != 4:
            raise BlockUnsupported(f"{op}: ws {_shape(ws)} is not a conv weight (out, in/groups, k, k)")
        groups = int(groups)
        k = ws.shape[-1]
        if ws.shape[-2] != k or k % 2 == 0 or k > MAX_KSIZE:
            raise BlockUnsupported(f"{op}: kernel {tuple(ws.shape[2:])}: only square odd k x k up to "
                                   f"{MAX_KSIZE} (padding k // 2 keeps the size)")
        if groups < 1 or c % groups:
            raise BlockUnsupported(f"{op}: groups={groups} does not divide {c} channels")
        if ws.shape[0] != c:
            raise BlockUnsupported(f"{op}: the k x k conv makes {ws.shape[0]} channels; the kernel "
                                   f"takes only as many as x's ({c})")
        _check_tensor("ws", ws, dtype, (c, c // groups, k, k))
        _check_tensor("bs", bs, dtype, (c,))
        _check_act(act, act_args, op)
        _check_1x1("we", we)
        _check_1x1("wp", wp)
        hid = we.shape[0]
        if hid == 0:
            raise BlockUnsupported(f"{op}: empty hidden dimension")
        _check_tensor("we", we, dtype, (hid, c, 1, 1))
        _check_tensor("be", be, dtype, (hid,))
        _check_tensor("wp", wp, dtype, (c, hid, 1, 1))
        _check_tensor("bp", bp, dtype, (c,))
        return

    if len(params) != 10:
        raise BlockUnsupported(f"mbconv_block takes 10 arguments after x, got {len(params)}")
    we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp = params
    _check_1x1("we", we)
    _check_1x1("wp", wp)
    hid = we.shape[0]
    if hid == 0:
        raise BlockUnsupported("mbconv_block: empty hidden dimension")
    _check_tensor("we", we, dtype, (hid, c, 1, 1))
    _check_tensor("be", be, dtype, (hid,))
    _check_act(act1, act1_args, "mbconv_block act1")
    if not isinstance(wd, torch.Tensor) or wd.dim() != 4:
        raise BlockUnsupported(f"mbconv_block: wd {_shape(wd)} is not a depthwise conv weight (hidden, 1, k, k)")
    k = wd.shape[-1]
    if wd.shape[-2] != k or k % 2 == 0 or k > MAX_KSIZE:
        raise BlockUnsupported(f"mbconv_block: kernel {tuple(wd.shape[2:])}: only square odd k x k up to "
                               f"{MAX_KSIZE} (padding k // 2 keeps the size)")
    _check_tensor("wd", wd, dtype, (hid, 1, k, k))
    _check_tensor("bd", bd, dtype, (hid,))
    _check_act(act2, act2_args, "mbconv_block act2")
    _check_tensor("wp", wp, dtype, (c, hid, 1, 1))
    _check_tensor("bp", bp, dtype, (c,))


# -- launch plans -------------------------------------------------------------------------------
def _plan(op: str, x: torch.Tensor, params, y: torch.Tensor, config: dict | None = None):
    """(kernel, grid, runtime args {name: value}, constexprs {name: value}, launch options).
    Absent optional tensors are passed as x (never read: their HAS_ switch is off)."""
    config = dict(config or {})

    def ptr(t):
        return x if t is None else t.contiguous()

    dot = 1 if x.dtype == torch.float32 else (2 if x.dtype == torch.bfloat16 and _interpreting() else 0)
    if op == "mlp_block":
        norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2 = params
        d = x.shape[-1]
        m = x.numel() // d if d else 0
        hid = w1.shape[0]
        lo, hi = _act_scalars(act, act_args)
        block_d = _pow2(d)
        block_m = config.pop("BLOCK_M", 16 if (m <= 16 or block_d >= 512) else 32)
        block_h = config.pop("BLOCK_H", 16 if block_d >= 512 else 32)
        num_warps = config.pop("num_warps", 8 if block_d >= 256 else 4)
        # fp32 rows of 512+ columns: a second pipeline stage of the weight tiles would pass
        # the 227 KiB of shared memory an H100 / H200 block may use.
        num_stages = config.pop("num_stages", 1 if block_d * x.element_size() >= 2048 else 2)
        args = dict(x_ptr=x, nw_ptr=ptr(norm_w if norm != "none" else None),
                    nb_ptr=ptr(norm_b if norm == "layer" else None), w1_ptr=ptr(w1), b1_ptr=ptr(b1),
                    w3_ptr=ptr(w3), b3_ptr=ptr(b3 if w3 is not None else None), w2_ptr=ptr(w2), b2_ptr=ptr(b2),
                    y_ptr=y, M=m, D=d, HID=hid, eps=float(eps), lo=lo, hi=hi)
        constexprs = dict(NORM=NORM_CODES[norm], HAS_NW=norm != "none" and norm_w is not None,
                          HAS_NB=norm == "layer" and norm_b is not None, HAS_B1=b1 is not None,
                          HAS_W3=w3 is not None, HAS_B3=w3 is not None and b3 is not None,
                          HAS_B2=b2 is not None, ACT=ACT_CODES[act], DOT=dot,
                          BLOCK_M=block_m, BLOCK_D=block_d, BLOCK_H=block_h)
        grid = (triton.cdiv(m, block_m),)
        kernel = _mlp_block_kernel
    else:
        n, c, h, w = x.shape
        block_c = _pow2(c)
        default_p = 16 if h * w <= 16 else (32 if block_c >= 128 or h * w <= 32 else 64)
        block_p = config.pop("BLOCK_P", default_p)
        block_h = config.pop("BLOCK_H", 32 if block_c <= 256 else 16)
        num_warps = config.pop("num_warps", 8 if block_c >= 256 else 4)
        num_stages = config.pop("num_stages", 1 if block_c * x.element_size() >= 2048 else 2)
        if op in ("convfirst_block", "convnext_block"):
            if op == "convnext_block":
                ws, bs, groups, eps, we, be, act, act_args, wp, bp = params
            else:
                ws, bs, groups, we, be, act, act_args, wp, bp = params
                eps = 0.0
            groups = int(groups)
            lo, hi = _act_scalars(act, act_args)
            hid = we.shape[0]
            args = dict(x_ptr=x, ws_ptr=ptr(ws), bs_ptr=ptr(bs), we_ptr=ptr(we), be_ptr=ptr(be), wp_ptr=ptr(wp),
                        bp_ptr=ptr(bp), y_ptr=y, C=c, H=h, W=w, HID=hid, eps=float(eps), lo=lo, hi=hi)
            constexprs = dict(CPG=c // groups, OPG=c // groups, KSIZE=ws.shape[-1], NORM=op == "convnext_block",
                              HAS_BS=bs is not None,
                              HAS_BE=be is not None, HAS_BP=bp is not None, ACT=ACT_CODES[act], DOT=dot,
                              BLOCK_C=block_c, BLOCK_P=block_p, BLOCK_H=block_h)
            kernel = _convfirst_block_kernel
        else:
            we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp = params
            lo1, hi1 = _act_scalars(act1, act1_args)
            lo2, hi2 = _act_scalars(act2, act2_args)
            hid = we.shape[0]
            args = dict(x_ptr=x, we_ptr=ptr(we), be_ptr=ptr(be), wd_ptr=ptr(wd), bd_ptr=ptr(bd), wp_ptr=ptr(wp),
                        bp_ptr=ptr(bp), y_ptr=y, C=c, H=h, W=w, HID=hid, lo1=lo1, hi1=hi1, lo2=lo2, hi2=hi2)
            constexprs = dict(KSIZE=wd.shape[-1], HAS_BE=be is not None, HAS_BD=bd is not None,
                              HAS_BP=bp is not None, ACT1=ACT_CODES[act1], ACT2=ACT_CODES[act2], DOT=dot,
                              BLOCK_C=block_c, BLOCK_P=block_p, BLOCK_H=block_h)
            kernel = _mbconv_block_kernel
        grid = (triton.cdiv(h * w, block_p), n)
    if config:
        raise BlockUnsupported(f"unknown config keys {sorted(config)}")
    for name in ("BLOCK_M", "BLOCK_P", "BLOCK_H"):
        v = constexprs.get(name)
        if v is not None and (v < 16 or v & (v - 1)):
            raise BlockUnsupported(f"{name}={v}: block sizes are powers of two >= 16 (tl.dot)")
    return kernel, grid, args, constexprs, {"num_warps": num_warps, "num_stages": num_stages}


def _interpreting() -> bool:
    try:
        return bool(triton.knobs.runtime.interpret)
    except AttributeError:  # older triton
        return os.environ.get("TRITON_INTERPRET") == "1"


def triton_block(op: str, x: torch.Tensor, *params, config: dict | None = None) -> torch.Tensor:
    """The block `op` (kernels/blocks.py) on x with the custom op's remaining arguments, in one
    Triton kernel; a new contiguous tensor of x's shape and dtype. `config` overrides the block
    sizes (BLOCK_M / BLOCK_P / BLOCK_H), num_warps and num_stages. Raises BlockUnsupported for what the
    kernels do not handle."""
    if not isinstance(x, torch.Tensor):
        raise BlockUnsupported(f"x is a {type(x).__name__}, not a tensor")
    check_supported(op, x.shape, x.dtype, params)
    if x.device.type == "cpu":
        if not _interpreting():
            raise BlockUnsupported("CPU tensors run only in Triton's interpreter (TRITON_INTERPRET=1 before "
                                   "triton is imported)")
    elif x.device.type != "cuda":
        raise BlockUnsupported(f"tensors on {x.device.type}: the Triton block kernels take CUDA tensors")
    for p in params:
        if isinstance(p, torch.Tensor) and p.device != x.device:
            raise BlockUnsupported(f"a parameter is on {p.device}, x on {x.device}")
    x = x.contiguous()
    y = torch.empty_like(x)
    if x.numel() == 0:
        return y
    kernel, grid, args, constexprs, options = _plan(op, x, params, y, config)
    kernel[grid](**args, **constexprs, **options)
    return y


# -- offline compilation ------------------------------------------------------------------------
def compile_offline(op: str, x: torch.Tensor, *params, arch: int = 90, config: dict | None = None):
    """Triton's CompiledKernel (cubin for sm_`arch`) of the block kernel for this problem, without
    a GPU: tensors may be on the meta device. Needs TRITON_INTERPRET off in this process."""
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    check_supported(op, x.shape, x.dtype, params)
    y = torch.empty_like(x)
    kernel, _, args, constexprs, options = _plan(op, x, params, y, config)
    sig = {}
    for name, value in args.items():
        if isinstance(value, torch.Tensor):
            sig[name] = "*" + DTYPES[value.dtype]
        elif isinstance(value, float):
            sig[name] = "fp32"
        else:
            sig[name] = "i32"
    sig.update({name: "constexpr" for name in constexprs})
    return triton.compile(ASTSource(kernel, signature=sig, constexprs=constexprs),
                          target=GPUTarget("cuda", arch, 32),
                          options=options)
