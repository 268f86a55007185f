"""Whole residual blocks as one op each: `fastc.convfirst_block`, `fastc.mbconv_block`,
`fastc.mlp_block` (what the fuse-blocks pass makes; passes/fuse_blocks.py).

    convfirst_block(x, ws, bs, groups, we, be, act, act_args, wp, bp)
        = x + conv1x1(act(conv1x1(conv_kxk(x, ws, bs, groups), we, be)), wp, bp)
          ConvFirst / ConvNeXt-style: a grouped (or depthwise) k x k convolution (stride 1,
          padding k // 2), a 1x1 expansion with its activation, a 1x1 projection, the input added.
    convnext_block(x, ws, bs, groups, eps, we, be, act, act_args, wp, bp)
        = x + conv1x1(act(conv1x1(channel_norm(conv_kxk(x, ws, bs, groups), eps), we, be)), wp, bp)
          ConvNeXt's block: as convfirst_block with each pixel's channels normalized (mean 0,
          variance 1, no affine: fuse-blocks folds the layer norm's weight and bias into the
          expansion, and the layer scale into the projection) between the k x k and the expansion.
    mbconv_block(x, we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp)
        = x + conv1x1(act2(dwconv_kxk(act1(conv1x1(x, we, be)), wd, bd)), wp, bp)
          MobileNetV2's inverted residual: 1x1 expansion, depthwise k x k (stride 1, padding
          k // 2), 1x1 projection, the input added.
    inverted_block(x, we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp)
        = conv1x1(act2(dwconv_kxk(pad(act1(conv1x1(x, we, be)), padding), wd, bd, stride)), wp, bp)
          MobileNetV2's inverted block without a residual (a stride-2 one, or one changing the
          channel count): zero padding [left, right, top, bottom] after act1, the depthwise conv
          unpadded with stride 1 or 2, the projection to any number of channels.
    mlp_block(x, norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2)
        = x + linear(act(linear(n, w1, b1)) [* linear(n, w3, b3)], w2, b2),  n = norm(x)
          The transformer MLP: norm "none", "layer" (layer norm over the last dimension, weight
          and bias optional) or "rms" (x * rsqrt(mean(x^2) + eps) * weight); the gate (w3)
          optional (LLaMA's SwiGLU: w1 is the activated projection, w3 the one multiplied).

Convolutions are NCHW, weights as nn.Conv2d holds them ((out, in / groups, k, k)); linear
weights (out, in) as nn.Linear's; biases optional. Activations: kernels.onednn.ACTIVATIONS.

Each op's implementation here is the reference: the block's ATen ops one by one, in the order
eager runs them (what the op runs outside a compiled graph, and the per-layer path a block
kernel is measured against). Block kernels compute the same values up to float rounding:
kernels/block_cpu.py generates one native loop nest per block for the cpu target (chosen per
problem by codegen/block_calls.py), and on CUDA tensors the ops run kernels/block_triton.py's
Triton kernel (registered below as the ops' CUDA implementation; a problem it refuses runs the
reference, the reason logged once).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .custom_ops import registered
from .onednn import activation

NORMS = ("none", "layer", "rms")


def _act(t: torch.Tensor, act: str, act_args) -> torch.Tensor:
    fn = activation(act, act_args)[0]
    return fn(t) if fn is not None else t


def convfirst_block_reference(x, ws, bs, groups, we, be, act, act_args, wp, bp):
    k = ws.shape[-1]
    s = F.conv2d(x, ws, bs, 1, k // 2, 1, groups)
    h = _act(F.conv2d(s, we, be), act, act_args)
    return x + F.conv2d(h, wp, bp)


def channel_norm(s, eps):
    """Each pixel's channels of NCHW `s` normalized (layer norm over C, no affine)."""
    return F.layer_norm(s.permute(0, 2, 3, 1), (s.shape[1],), None, None, eps).permute(0, 3, 1, 2)


def convnext_block_reference(x, ws, bs, groups, eps, we, be, act, act_args, wp, bp):
    k = ws.shape[-1]
    s = channel_norm(F.conv2d(x, ws, bs, 1, k // 2, 1, groups), eps)
    h = _act(F.conv2d(s, we, be), act, act_args)
    return x + F.conv2d(h, wp, bp)


def mbconv_block_reference(x, we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp):
    k = wd.shape[-1]
    h = _act(F.conv2d(x, we, be), act1, act1_args)
    h = _act(F.conv2d(h, wd, bd, 1, k // 2, 1, wd.shape[0]), act2, act2_args)
    return x + F.conv2d(h, wp, bp)


def inverted_block_reference(x, we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp):
    h = F.pad(_act(F.conv2d(x, we, be), act1, act1_args), list(padding))
    h = _act(F.conv2d(h, wd, bd, stride, 0, 1, wd.shape[0]), act2, act2_args)
    return F.conv2d(h, wp, bp)


def inverted_out_size(size: int, k: int, stride: int, before: int, after: int) -> int:
    return (size + before + after - k) // stride + 1


def normalized(x, norm, norm_w, norm_b, eps):
    if norm == "none":
        return x
    if norm == "layer":
        return F.layer_norm(x, (x.shape[-1],), norm_w, norm_b, eps)
    if norm == "rms":
        n = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
        return n * norm_w if norm_w is not None else n
    raise ValueError(f"unknown norm {norm!r} (valid: {', '.join(NORMS)})")


def mlp_block_reference(x, norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2):
    n = normalized(x, norm, norm_w, norm_b, eps)
    h = _act(F.linear(n, w1, b1), act, act_args)
    if w3 is not None:
        h = h * F.linear(n, w3, b3)
    return x + F.linear(h, w2, b2)


# -- CUDA: the Triton block kernel -------------------------------------------------------------
_REFUSED: set = set()


def _on_cuda(op: str, reference, x, params):
    """The block's Triton kernel (kernels/block_triton.py) where it takes the problem, else the
    reference with the reason logged once per op and reason."""
    try:
        from .block_triton import BlockUnsupported, triton_block
    except ImportError as e:  # no triton: the layers one by one
        reason = f"triton is not importable ({e})"
    else:
        try:
            return triton_block(op, x, *params)
        except BlockUnsupported as e:
            reason = str(e)
    if (op, reason) not in _REFUSED:
        _REFUSED.add((op, reason))
        import logging
        logging.getLogger("fastc").warning("fastc: %s runs layer by layer on the GPU: %s", op, reason)
    return reference(x, *params)


# -- registration ------------------------------------------------------------------------------
def _register() -> None:
    if registered("convfirst_block"):
        return

    @torch.library.custom_op("fastc::convfirst_block", mutates_args=())
    def convfirst_block(x: torch.Tensor, ws: torch.Tensor, bs: Optional[torch.Tensor], groups: int,
                        we: torch.Tensor, be: Optional[torch.Tensor], act: str, act_args: list[float],
                        wp: torch.Tensor, bp: Optional[torch.Tensor]) -> torch.Tensor:
        return convfirst_block_reference(x, ws, bs, groups, we, be, act, act_args, wp, bp)

    @convfirst_block.register_kernel("cuda")
    def _convfirst_cuda(x, *params):
        return _on_cuda("convfirst_block", convfirst_block_reference, x, params)

    @convfirst_block.register_fake
    def _convfirst_fake(x, ws, bs, groups, we, be, act, act_args, wp, bp):
        return torch.empty_like(x)

    @torch.library.custom_op("fastc::convnext_block", mutates_args=())
    def convnext_block(x: torch.Tensor, ws: torch.Tensor, bs: Optional[torch.Tensor], groups: int, eps: float,
                       we: torch.Tensor, be: Optional[torch.Tensor], act: str, act_args: list[float],
                       wp: torch.Tensor, bp: Optional[torch.Tensor]) -> torch.Tensor:
        return convnext_block_reference(x, ws, bs, groups, eps, we, be, act, act_args, wp, bp)

    @convnext_block.register_kernel("cuda")
    def _convnext_cuda(x, *params):
        return _on_cuda("convnext_block", convnext_block_reference, x, params)

    @convnext_block.register_fake
    def _convnext_fake(x, ws, bs, groups, eps, we, be, act, act_args, wp, bp):
        return torch.empty_like(x)

    @torch.library.custom_op("fastc::mbconv_block", mutates_args=())
    def mbconv_block(x: torch.Tensor, we: torch.Tensor, be: Optional[torch.Tensor], act1: str,
                     act1_args: list[float], wd: torch.Tensor, bd: Optional[torch.Tensor], act2: str,
                     act2_args: list[float], wp: torch.Tensor, bp: Optional[torch.Tensor]) -> torch.Tensor:
        return mbconv_block_reference(x, we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp)

    @mbconv_block.register_kernel("cuda")
    def _mbconv_cuda(x, *params):
        return _on_cuda("mbconv_block", mbconv_block_reference, x, params)

    @mbconv_block.register_fake
    def _mbconv_fake(x, we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp):
        return torch.empty_like(x)

    @torch.library.custom_op("fastc::inverted_block", mutates_args=())
    def inverted_block(x: torch.Tensor, we: torch.Tensor, be: Optional[torch.Tensor], act1: str,
                       act1_args: list[float], wd: torch.Tensor, bd: Optional[torch.Tensor], stride: int,
                       padding: list[int], act2: str, act2_args: list[float], wp: torch.Tensor,
                       bp: Optional[torch.Tensor]) -> torch.Tensor:
        return inverted_block_reference(x, we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp)

    @inverted_block.register_kernel("cuda")
    def _inverted_cuda(x, *params):
        return _on_cuda("inverted_block", inverted_block_reference, x, params)

    @inverted_block.register_fake
    def _inverted_fake(x, we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp):
        k = wd.shape[-1]
        oh = inverted_out_size(x.shape[2], k, stride, padding[2], padding[3])
        ow = inverted_out_size(x.shape[3], k, stride, padding[0], padding[1])
        return x.new_empty((x.shape[0], wp.shape[0], oh, ow))

    @torch.library.custom_op("fastc::mlp_block", mutates_args=())
    def mlp_block(x: torch.Tensor, norm: str, norm_w: Optional[torch.Tensor], norm_b: Optional[torch.Tensor],
                  eps: float, w1: torch.Tensor, b1: Optional[torch.Tensor], w3: Optional[torch.Tensor],
                  b3: Optional[torch.Tensor], act: str, act_args: list[float], w2: torch.Tensor,
                  b2: Optional[torch.Tensor]) -> torch.Tensor:
        return mlp_block_reference(x, norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2)

    @mlp_block.register_kernel("cuda")
    def _mlp_cuda(x, *params):
        return _on_cuda("mlp_block", mlp_block_reference, x, params)

    @mlp_block.register_fake
    def _mlp_fake(x, norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2):
        return torch.empty_like(x)


_register()


# -- the layers one by one through oneDNN, weights packed once ------------------------------------
def bind_onednn_layers(op: str, x_shape, params) -> "callable":
    """run(x) computing block `op` layer by layer as fastc runs products without the block op:
    each convolution or linear layer one oneDNN primitive on a weight packed once, its activation
    (and the residual add, on the last) fused (kernels/onednn.py). The per-layer path a block
    kernel is measured against. Raises what oneDNN raises when it cannot run the problem."""
    from .onednn import PackedConv, PackedLinear, bind_conv2d_act, bind_linear_act, onednn_refusal
    reason = onednn_refusal(params[0].dtype if op != "mlp_block" else params[4].dtype, torch.device("cpu"))
    if reason is not None:
        raise ValueError(reason)
    if op == "mlp_block":
        norm, norm_w, norm_b, eps, w1, b1, w3, b3, act, act_args, w2, b2 = params
        up = bind_linear_act("onednn", None, False, act, act_args, packed=PackedLinear(w1))
        gate = bind_linear_act("onednn", None, False, "none", [], packed=PackedLinear(w3)) if w3 is not None else None
        down = bind_linear_act("onednn", None, True, "none", [], packed=PackedLinear(w2))

        def run_mlp(x):
            n = normalized(x, norm, norm_w, norm_b, eps)
            h = up(n, None, b1, None)
            if gate is not None:
                h = h * gate(n, None, b3, None)
            return down(h, None, b2, x)
        return run_mlp

    n, c, height, width = x_shape

    def conv(w, groups, act, act_args, residual, last, size):
        k = w.shape[-1]
        pad = [k // 2, k // 2]
        packed = PackedConv(w, [1, 1], pad, [1, 1], groups, size)
        return bind_conv2d_act("onednn", None, [1, 1], pad, [1, 1], groups, residual, act, act_args,
                               not last, packed=packed)
    if op == "convfirst_block":
        ws, bs, groups, we, be, act, act_args, wp, bp = params
        hidden = we.shape[0]
        steps = [(conv(ws, groups, "none", [], False, False, x_shape), bs),
                 (conv(we, 1, act, act_args, False, False, x_shape), be),
                 (conv(wp, 1, "none", [], True, True, (n, hidden, height, width)), bp)]
    elif op == "convnext_block":
        ws, bs, groups, eps, we, be, act, act_args, wp, bp = params
        hidden = we.shape[0]
        spatial = conv(ws, groups, "none", [], False, False, x_shape)
        expand = conv(we, 1, act, act_args, False, False, x_shape)
        project = conv(wp, 1, "none", [], True, True, (n, hidden, height, width))

        def run_convnext(x):
            s = spatial(x, None, bs)   # channels-last: each pixel's channels contiguous for the norm
            s = F.layer_norm(s.permute(0, 2, 3, 1), (c,), None, None, eps).permute(0, 3, 1, 2)
            return project(expand(s, None, be), None, bp, None, None, None, None, x)
        return run_convnext
    elif op == "inverted_block":
        we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp = params
        hidden, k = we.shape[0], wd.shape[-1]
        left, right, top, bottom = padding
        symmetric = left == right and top == bottom
        pad = [top, left] if symmetric else [0, 0]
        expand = conv(we, 1, act1, act1_args, False, False, x_shape)
        packed = PackedConv(wd, [stride, stride], pad, [1, 1], hidden, (n, hidden, height, width))
        depthwise = bind_conv2d_act("onednn", None, [stride, stride], pad, [1, 1], hidden, False, act2, act2_args,
                                    True, packed=packed)
        oh = inverted_out_size(height, k, stride, top, bottom)
        ow = inverted_out_size(width, k, stride, left, right)
        project = conv(wp, 1, "none", [], False, True, (n, hidden, oh, ow))

        def run_inverted(x):
            h = expand(x, None, be)
            if not symmetric:
                h = F.pad(h, list(padding))
            return project(depthwise(h, None, bd), None, bp)
        return run_inverted
    elif op == "mbconv_block":
        we, be, act1, act1_args, wd, bd, act2, act2_args, wp, bp = params
        hidden = we.shape[0]
        steps = [(conv(we, 1, act1, act1_args, False, False, x_shape), be),
                 (conv(wd, hidden, act2, act2_args, False, False, (n, hidden, height, width)), bd),
                 (conv(wp, 1, "none", [], True, True, (n, hidden, height, width)), bp)]
    else:
        raise ValueError(f"unknown block op {op!r} (valid: convfirst_block, convnext_block, inverted_block, "
                         "mbconv_block, mlp_block)")
    (first, b_1), (second, b_2), (third, b_3) = steps

    def run_conv_block(x):
        t = first(x, None, b_1)
        t = second(t, None, b_2)
        return third(t, None, b_3, None, None, None, None, x)
    return run_conv_block
