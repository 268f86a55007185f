"""The native CPU block kernels (kernels/block_cpu.py) against kernels/blocks.py's references."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("torch_mlir")

from fastc.kernels.block_cpu import BlockUnsupported, compile_block  # noqa: E402
from fastc.kernels.blocks import (convfirst_block_reference, convnext_block_reference,  # noqa: E402
                                  mbconv_block_reference, mlp_block_reference)
from fastc.kernels.onednn import activation  # noqa: E402

TOL = dict(rtol=1e-4, atol=1e-4)


def _convfirst(N, C, H, W, k, g, e, act="gelu", act_args=(), bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    x = r(N, C, H, W)
    hid = C * e
    params = (r(C, C // g, k, k) * 0.2, r(C) * 0.1 if bias else None, g, r(hid, C, 1, 1) * 0.1,
              r(hid) * 0.1 if bias else None, act, list(act_args), r(C, hid, 1, 1) * 0.1, r(C) * 0.1 if bias else None)
    return x, params


def _convnext(N, C, H, W, k, g, e, act="gelu", eps=1e-6, bias=True, seed=0, shift=False):
    """convnext_block's inputs: convfirst_block's with eps after groups; shift: x * 3 + 5 (a large
    mean in every channel of the conv's output, against the variance's cancellation)."""
    x, (ws, bs, g_, we, be, act_, act_args, wp, bp) = _convfirst(N, C, H, W, k, g, e, act=act, bias=bias, seed=seed)
    if shift:
        x = x * 3 + 5
    return x, (ws, bs, g_, eps, we, be, act_, act_args, wp, bp)


def _mbconv(N, C, H, W, e, k=3, act1="hardtanh", a1=(0.0, 6.0), act2="hardtanh", a2=(0.0, 6.0), seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    x = r(N, C, H, W)
    hid = C * e
    params = (r(hid, C, 1, 1) * 0.2, r(hid) * 0.1, act1, list(a1), r(hid, 1, k, k) * 0.3, r(hid) * 0.1,
              act2, list(a2), r(C, hid, 1, 1) * 0.1, r(C) * 0.1)
    return x, params


def _mlp(shape, hid, norm, act, gate, act_args=(), seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    D = shape[-1]
    x = r(*shape)
    nw = r(D) * 0.1 + 1 if norm != "none" else None
    nb = r(D) * 0.1 if norm == "layer" else None
    params = (norm, nw, nb, 1e-5, r(hid, D) / D ** 0.5, r(hid) * 0.1,
              r(hid, D) / D ** 0.5 if gate else None, r(hid) * 0.1 if gate else None, act, list(act_args),
              r(D, hid) / hid ** 0.5, r(D) * 0.1)
    return x, params


REF = {"convfirst_block": convfirst_block_reference, "convnext_block": convnext_block_reference,
       "mbconv_block": mbconv_block_reference,
       "mlp_block": mlp_block_reference}


def _check(op, x, params):
    out = compile_block(op, tuple(x.shape), params)(x)
    ref = REF[op](x, *params)
    assert out.shape == x.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, **TOL)
    return out


@pytest.mark.parametrize("case", [
    (2, 32, 16, 16, 3, 8, 4),     # digits-cnn ConvFirst
    (2, 64, 8, 8, 3, 8, 4),
    (2, 64, 14, 14, 7, 64, 4),    # ConvNeXt-like depthwise 7x7
    (1, 24, 6, 5, 3, 24, 6),      # channels not multiples of MR, odd width
    (1, 16, 4, 4, 7, 4, 2),       # kernel wider than the image
])
def test_convfirst(case):
    N, C, H, W, k, g, e = case
    _check("convfirst_block", *_convfirst(N, C, H, W, k, g, e))


def test_convfirst_no_bias_relu():
    _check("convfirst_block", *_convfirst(2, 16, 8, 8, 3, 16, 4, act="relu", bias=False))


@pytest.mark.parametrize("case,shift", [
    ((2, 16, 6, 6, 7, 16, 4), False),    # depthwise 7x7, kernel wider than the image
    ((1, 24, 5, 5, 3, 24, 4), False),    # groups = C = 24, k = 3, odd width
    ((1, 64, 14, 14, 7, 64, 4), True),   # ConvNeXt-like, inputs of large mean
])
def test_convnext(case, shift):
    N, C, H, W, k, g, e = case
    _check("convnext_block", *_convnext(N, C, H, W, k, g, e, shift=shift))


def test_convnext_grouped_no_bias_relu():
    _check("convnext_block", *_convnext(2, 32, 8, 8, 3, 8, 2, act="relu", eps=1e-5, bias=False))


def test_convnext_not_convfirst():
    """convnext and convfirst of equal shapes are different modules (the norm is applied)."""
    x, params = _convnext(1, 16, 6, 6, 3, 16, 2)
    r_next = compile_block("convnext_block", x.shape, params)
    r_first = compile_block("convfirst_block", x.shape, params[:3] + params[4:])
    assert r_next.mod is not r_first.mod
    assert not torch.allclose(r_next(x), r_first(x))
    with pytest.raises(BlockUnsupported, match="10 parameters"):
        compile_block("convnext_block", x.shape, params[:3] + params[4:])


@pytest.mark.parametrize("hw", [8, 4, 2, 1])
def test_mbconv_relu6(hw):
    _check("mbconv_block", *_mbconv(2, 16, hw, hw, 6))


def test_mbconv_bands_and_odd_channels():
    _check("mbconv_block", *_mbconv(2, 24, 32, 32, 6))                 # several bands per image
    _check("mbconv_block", *_mbconv(1, 20, 9, 7, 5, k=5, act1="silu", a1=(), act2="hardswish", a2=()))


@pytest.mark.parametrize("shape,hid,norm,act,gate", [
    ((64, 64), 256, "layer", "gelu", False),
    ((2, 33, 100), 300, "rms", "silu", True),      # D, hidden not multiples of the vector width
    ((5, 24), 40, "none", "relu", False),
])
def test_mlp(shape, hid, norm, act, gate):
    _check("mlp_block", *_mlp(shape, hid, norm, act, gate))


@pytest.mark.parametrize("act,args", [("none", ()), ("relu", ()), ("hardtanh", (-0.5, 0.7)), ("gelu", ()),
                                      ("gelu-tanh", ()), ("silu", ()), ("sigmoid", ()), ("tanh", ()),
                                      ("hardswish", ())])
def test_activations(act, args):
    x, params = _mlp((7, 40), 24, "layer", act, False, act_args=args)
    params = params[:4] + (params[4] * 6,) + params[5:]     # pre-activations over a wide range
    _check("mlp_block", x, params)


def test_threads_bitwise_equal():
    cases = [("convfirst_block",) + _convfirst(4, 32, 16, 16, 3, 8, 4),
             ("convnext_block",) + _convnext(4, 64, 14, 14, 7, 64, 4, shift=True),
             ("mbconv_block",) + _mbconv(4, 24, 16, 16, 6),
             ("mlp_block",) + _mlp((50, 72), 200, "layer", "gelu", False)]
    before = torch.get_num_threads()
    try:
        for op, x, params in cases:
            outs = []
            for t in (1, 2):
                torch.set_num_threads(t)
                outs.append(compile_block(op, tuple(x.shape), params)(x))
            assert torch.equal(outs[0], outs[1]), op
    finally:
        torch.set_num_threads(before)


def test_shared_module_different_weights():
    x, p1 = _convfirst(2, 32, 8, 8, 3, 8, 4, seed=1)
    _, p2 = _convfirst(2, 32, 8, 8, 3, 8, 4, seed=2)
    r1, r2 = compile_block("convfirst_block", x.shape, p1), compile_block("convfirst_block", x.shape, p2)
    assert r1.mod is r2.mod
    torch.testing.assert_close(r1(x), convfirst_block_reference(x, *p1), **TOL)
    torch.testing.assert_close(r2(x), convfirst_block_reference(x, *p2), **TOL)


def test_refusals():
    x, params = _convfirst(1, 16, 8, 8, 3, 4, 2, act="mish")
    with pytest.raises(BlockUnsupported, match="activation 'mish'"):
        compile_block("convfirst_block", x.shape, params)
    x, params = _mbconv(1, 16, 4, 4, 2)
    p64 = tuple(p.double() if isinstance(p, torch.Tensor) else p for p in params)
    with pytest.raises(BlockUnsupported, match="float64"):
        compile_block("mbconv_block", x.shape, p64)
    run = compile_block("mbconv_block", x.shape, params)
    with pytest.raises(BlockUnsupported, match="float32"):
        run(x.double())
    with pytest.raises(BlockUnsupported, match="shape"):
        run(torch.randn(2, 16, 4, 4))
    x, params = _convfirst(1, 16, 8, 8, 4, 4, 2)        # even kernel
    with pytest.raises(BlockUnsupported, match="odd square kernel"):
        compile_block("convfirst_block", x.shape, params)
    with pytest.raises(BlockUnsupported, match="unknown op"):
        compile_block("attention_block", x.shape, params)
    x, params = _mlp((4, 16), 32, "batch", "relu", False)
    with pytest.raises(BlockUnsupported, match="norm"):
        compile_block("mlp_block", x.shape, params)


# -- inverted_block: MobileNetV2's inverted block without residual, strided, explicit padding ------
def _act(t, act, act_args):
    fn = activation(act, act_args)[0]
    return fn(t) if fn is not None else t


def inverted_block_reference(x, we, be, act1, act1_args, wd, bd, stride, padding, act2, act2_args, wp, bp):
    """padding = [left, right, top, bottom] (zeros, applied after act1)."""
    h = _act(F.conv2d(x, we, be), act1, act1_args)
    h = F.pad(h, list(padding))
    h = _act(F.conv2d(h, wd, bd, stride, 0, 1, wd.shape[0]), act2, act2_args)
    return F.conv2d(h, wp, bp)


def _inverted(N, C, H, W, e, cout, stride, padding, k=3, act1="hardtanh", a1=(0.0, 6.0), act2="hardtanh",
              a2=(0.0, 6.0), seed=0):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=gen)  # noqa: E731
    x = r(N, C, H, W)
    hid = C * e
    params = (r(hid, C, 1, 1) * 0.2, r(hid) * 0.1, act1, list(a1), r(hid, 1, k, k) * 0.3, r(hid) * 0.1,
              stride, list(padding), act2, list(a2), r(cout, hid, 1, 1) * 0.1, r(cout) * 0.1)
    return x, params


def _check_inverted(x, params):
    out = compile_block("inverted_block", tuple(x.shape), params)(x)
    ref = inverted_block_reference(x, *params)
    assert out.shape == ref.shape and out.is_contiguous()
    torch.testing.assert_close(out, ref, **TOL)
    return out


@pytest.mark.parametrize("case", [
    (2, 16, 8, 8, 6, 24, 2, (0, 1, 0, 1)),      # HF MobileNetV2's stride-2 padding
    (2, 16, 16, 16, 6, 24, 2, (0, 1, 0, 1)),
    (1, 16, 7, 7, 6, 24, 2, (1, 1, 1, 1)),      # torchvision's, odd size
    (2, 24, 4, 4, 6, 32, 1, (1, 1, 1, 1)),      # stride 1
    (2, 16, 2, 2, 6, 24, 2, (0, 1, 0, 1)),      # 2x2 input -> 1x1
    (1, 16, 2, 2, 6, 24, 2, (1, 1, 1, 1)),
])
def test_inverted(case):
    N, C, H, W, e, cout, s, pad = case
    _check_inverted(*_inverted(N, C, H, W, e, cout, s, pad))


def test_inverted_k5_bands_asymmetric():
    # several bands per image, k = 5, asymmetric padding, other activations
    _check_inverted(*_inverted(1, 24, 40, 36, 6, 40, 2, (2, 1, 1, 2), k=5, act1="silu", a1=(), act2="relu", a2=()))
    _check_inverted(*_inverted(1, 8, 33, 9, 4, 12, 1, (0, 2, 2, 0), k=3))


def test_inverted_threads_bitwise_equal():
    x, params = _inverted(4, 24, 16, 16, 6, 32, 2, (0, 1, 0, 1))
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2):
            torch.set_num_threads(t)
            outs.append(compile_block("inverted_block", tuple(x.shape), params)(x))
        assert torch.equal(outs[0], outs[1])
    finally:
        torch.set_num_threads(before)


def test_inverted_refusals():
    x, params = _inverted(1, 16, 8, 8, 2, 24, 2, (0, 1, 0, 1), k=4)       # even kernel
    with pytest.raises(BlockUnsupported, match="odd square kernel"):
        compile_block("inverted_block", x.shape, params)
    x, params = _inverted(1, 16, 8, 8, 2, 24, 3, (1, 1, 1, 1))            # stride 3
    with pytest.raises(BlockUnsupported, match="stride"):
        compile_block("inverted_block", x.shape, params)
    x, params = _inverted(1, 16, 8, 8, 2, 24, 2, (0, 3, 0, 1))            # padding > k - 1
    with pytest.raises(BlockUnsupported, match="padding"):
        compile_block("inverted_block", x.shape, params)
    with pytest.raises(BlockUnsupported, match="12 parameters"):
        compile_block("inverted_block", x.shape, params[:7] + params[8:])
