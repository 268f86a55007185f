"""Products with their epilogues through oneDNN, with weights packed once: `fastc.conv2d_act`
and `fastc.linear_act`.

    conv2d_act(x, w, b, stride, padding, dilation, groups, residual, act, act_args, any_layout)
        = act(conv2d(x, w, b, ...) + residual)          (residual optional)
    linear_act(x, w, b, residual, act, act_args)
        = act(x @ w.T + b + residual)                     (w is (out, in), as nn.Linear's)

Each op has two implementations computing the same values, and which runs is a preference
(the choices object's, per problem; codegen/library_calls.py):
- `aten`: the ATen ops one by one (convolution / addmm, add, the activation); also what the op
  runs when called outside a compiled graph.
- `onednn`: one oneDNN primitive with the activation (and the residual add) as post-ops, on a
  weight reordered once into the blocked layout oneDNN's kernels read (`PackedConv`,
  `PackedLinear`): what Inductor's freezing does for CPU convolutions. On the 2-core AMD EPYC
  this project measures on, ATen's fp32 GEMM (MKL) reaches about half of oneDNN's speed at
  transformer sizes, and ATen's convolution reorders its weight at every call.

Layouts: oneDNN writes a packed convolution's output channels-last. Unless `any_layout` (the
graph's pass sets it when only other conv2d_act ops read the value, which take any layout),
both implementations return a contiguous tensor, as the graph's later views expect; with it,
both return it channels-last (ATen's runs on a channels-last copy of an input that is not), so
the layout a chain of convolutions and poolings runs in does not depend on which one is picked.

Activations (`ACTIVATIONS`): none, relu, hardtanh (act_args = [min, max]; relu6 is [0, 6]),
gelu, gelu-tanh, silu, sigmoid, tanh, hardswish. Only float32 is taken (`onednn_refusal`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .custom_ops import registered

# name -> (the ATen function, oneDNN's post-op name, oneDNN's algorithm)
ACTIVATIONS = {
    "none": (None, "none", ""),
    "relu": (torch.relu, "relu", ""),
    "hardtanh": (lambda t, lo, hi: F.hardtanh(t, lo, hi), "hardtanh", ""),
    "gelu": (F.gelu, "gelu", "none"),
    "gelu-tanh": (lambda t: F.gelu(t, approximate="tanh"), "gelu", "tanh"),
    "silu": (F.silu, "swish", ""),
    "sigmoid": (torch.sigmoid, "sigmoid", ""),
    "tanh": (torch.tanh, "tanh", ""),
    "hardswish": (F.hardswish, "hardswish", ""),
}


def onednn_refusal(dtype: torch.dtype, device: torch.device) -> str | None:
    """Why oneDNN products cannot run here (None when they can)."""
    if device.type != "cpu":
        return f"tensors on {device.type}: oneDNN products run on the CPU"
    if dtype != torch.float32:
        return f"dtype {dtype}: fastc's oneDNN products take float32"
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return "this torch build has no oneDNN (mkldnn) fused products"
    return None


def activation(act: str, act_args) -> tuple:
    """(ATen function taking the tensor, oneDNN post-op, scalars, algorithm) of `act`."""
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r} (valid: {', '.join(ACTIVATIONS)})")
    fn, post_op, algorithm = ACTIVATIONS[act]
    args = [float(a) for a in act_args]
    if fn is not None and args:
        fn = (lambda f, a: (lambda t: f(t, *a)))(fn, args)
    return fn, post_op, args, algorithm


# -- ATen: the ops one by one -------------------------------------------------------------------
def conv2d_act_aten(x, weight, bias, stride, padding, dilation, groups, residual, act, act_args, any_layout):
    run = bind_conv2d_act("aten", weight, stride, padding, dilation, groups, residual is not None, act, act_args,
                          any_layout)
    return run(x, weight, bias, stride, padding, dilation, groups, residual, act, act_args, any_layout)


def linear_act_aten(x, weight, bias, residual, act, act_args):
    return bind_linear_act("aten", weight, residual is not None, act, act_args)(x, weight, bias, residual)


# -- oneDNN: one primitive on a packed weight ---------------------------------------------------
class PackedConv:
    """A convolution's weight reordered once for oneDNN, for inputs of `input_size` (other sizes
    still compute the right values; oneDNN then reorders again)."""

    def __init__(self, weight: torch.Tensor, stride, padding, dilation, groups: int, input_size):
        self.stride, self.padding, self.dilation, self.groups = list(stride), list(padding), list(dilation), groups
        self.packed = torch.ops.mkldnn._reorder_convolution_weight(
            weight, self.padding, self.stride, self.dilation, groups, list(input_size))

    def __call__(self, x, bias, residual, act, act_args, any_layout):
        run = bind_conv2d_act("onednn", None, self.stride, self.padding, self.dilation, self.groups,
                              residual is not None, act, act_args, any_layout, packed=self)
        return run(x, None, bias, self.stride, self.padding, self.dilation, self.groups, residual)


class PackedLinear:
    """A linear layer's (out, in) weight in oneDNN's own tensor format, converted once."""

    def __init__(self, weight: torch.Tensor):
        self.packed = weight.contiguous().to_mkldnn()

    def __call__(self, x, bias, residual, act, act_args):
        return bind_linear_act("onednn", None, residual is not None, act, act_args, packed=self)(x, None, bias, residual)


# -- bound: one call site's implementation, everything but the tensors resolved once -------------
def bind_conv2d_act(kind: str, weight, stride, padding, dilation, groups: int, has_residual: bool, act: str,
                    act_args, any_layout: bool, packed: "PackedConv | None" = None):
    """A callable taking the op's arguments (only x, bias and residual read) that runs `kind`
    ("aten", or "onednn" on `packed`) with everything else fixed: the per-call Python is a few
    lines."""
    fn, post_op, scalars, algorithm = activation(act, act_args)
    stride, padding, dilation = list(stride), list(padding), list(dilation)
    contiguous = not any_layout
    if kind == "aten":
        conv = torch.ops.aten.convolution.default._op

        def run_aten(x, w, b, *rest):
            if any_layout:  # channels-last in, channels-last out: the layout oneDNN's result has
                x = x.contiguous(memory_format=torch.channels_last)
            out = conv(x, weight, b, stride, padding, dilation, False, [0, 0], groups)
            if has_residual:
                out.add_(rest[4])  # a fresh output: added in place
            if fn is not None:
                out = fn(out)
            return out.contiguous() if contiguous else out
        return run_aten
    packed = packed.packed
    if not has_residual:
        unary = torch.ops.mkldnn._convolution_pointwise.default._op

        def run_onednn(x, w, b, *rest):
            out = unary(x, packed, b, padding, stride, dilation, groups, post_op, scalars, algorithm)
            return out.contiguous() if contiguous else out
        return run_onednn
    binary = torch.ops.mkldnn._convolution_pointwise.binary._op
    fused = post_op == "relu"   # oneDNN takes relu, and no other activation, after its binary add
    after = None if fused else fn

    def run_onednn_residual(x, w, b, *rest):
        out = binary(x, rest[4], packed, b, padding, stride, dilation, groups, "add", None,
                     "relu" if fused else None, [], "")
        if after is not None:
            out = after(out)
        return out.contiguous() if contiguous else out
    return run_onednn_residual


def bind_linear_act(kind: str, weight, has_residual: bool, act: str, act_args,
                    packed: "PackedLinear | None" = None):
    """As bind_conv2d_act, for linear_act (x, bias and residual read at each call)."""
    fn, post_op, scalars, algorithm = activation(act, act_args)
    if kind == "aten":
        linear = F.linear

        def run_aten(x, w, b, r, *rest):
            out = linear(x, weight, b)
            if has_residual:
                out.add_(r)
            return fn(out) if fn is not None else out
        return run_aten
    packed = packed.packed
    if not has_residual:
        unary = torch.ops.mkldnn._linear_pointwise.default._op

        def run_onednn(x, w, b, *rest):
            return unary(x, packed, b, post_op, scalars, algorithm)
        return run_onednn
    binary = torch.ops.mkldnn._linear_pointwise.binary._op

    def run_onednn_residual(x, w, b, r, *rest):  # no activation after oneDNN's binary add
        out = binary(x, r, packed, b, "add")
        return fn(out) if fn is not None else out
    return run_onednn_residual


# -- registration ------------------------------------------------------------------------------
def _conv_out_size(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def _register() -> None:
    if registered("conv2d_act"):
        return

    @torch.library.custom_op("fastc::conv2d_act", mutates_args=())
    def conv2d_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: list[int],
                   padding: list[int], dilation: list[int], groups: int, residual: Optional[torch.Tensor],
                   act: str, act_args: list[float], any_layout: bool) -> torch.Tensor:
        return conv2d_act_aten(x, weight, bias, stride, padding, dilation, groups, residual, act, act_args,
                               any_layout)

    @conv2d_act.register_fake
    def _conv_fake(x, weight, bias, stride, padding, dilation, groups, residual, act, act_args, any_layout):
        n, _, h, w = x.shape
        oh = _conv_out_size(h, weight.shape[2], stride[0], padding[0], dilation[0])
        ow = _conv_out_size(w, weight.shape[3], stride[1], padding[1], dilation[1])
        return x.new_empty((n, weight.shape[0], oh, ow))

    @torch.library.custom_op("fastc::linear_act", mutates_args=())
    def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   residual: Optional[torch.Tensor], act: str, act_args: list[float]) -> torch.Tensor:
        return linear_act_aten(x, weight, bias, residual, act, act_args)

    @linear_act.register_fake
    def _linear_fake(x, weight, bias, residual, act, act_args):
        torch._check(x.shape[-1] == weight.shape[1],
                     lambda: f"fastc::linear_act: x has {x.shape[-1]} features, the weight {weight.shape[1]}")
        return x.new_empty((*x.shape[:-1], weight.shape[0]))


_register()
