"""fold-batchnorm: folds inference BatchNorm into the convolution or linear layer before it."""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.constants import add_constant
from fastc.ir.evaluate import evaluate

from .base import Pass, register
from .context import PassContext

aten = torch.ops.aten


@register
@dataclass(frozen=True)
class FoldBatchNorm(Pass):
    """Rewrites `batch_norm(conv(x, W, b))` as `conv(x, W', b')`, and likewise for `addmm`/`mm`.

    With s = gamma / sqrt(running_var + eps): W' = W * s (per output channel) and
    b' = (b - running_mean) * s + beta. Legal only for inference BatchNorm
    (`_native_batch_norm_legit_no_training`, i.e. eval mode) whose statistics and affine
    parameters are constants, over a convolution or matrix product whose weight is a constant (or
    a pure function of constants) and whose result nothing else reads. Exact up to float rounding.
    """
    name = "fold-batchnorm"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        folded = 0
        for bn in list(gm.graph.nodes):
            args = _inference_batch_norm_args(bn)
            if args is not None:
                folded += self._fold(gm, bn, *args)
        return folded

    def _fold(self, gm: fx.GraphModule, bn: fx.Node, producer, gamma, beta, mean, var, eps) -> int:
        users = list(bn.users)
        # Only the normalised output (item 0) may be read; items 1 and 2 are empty in eval mode.
        if any(u.target is not operator.getitem or (u.args[1] != 0 and u.users) for u in users):
            return 0
        if not isinstance(producer, fx.Node) or len(producer.users) != 1:
            return 0
        mean_v, var_v = evaluate(mean), evaluate(var)
        gamma_v = evaluate(gamma) if gamma is not None else None
        beta_v = evaluate(beta) if beta is not None else None
        if mean_v is None or var_v is None or (gamma is not None and gamma_v is None) or (
                beta is not None and beta_v is None):
            return 0
        scale = torch.rsqrt(var_v.double() + eps)
        if gamma_v is not None:
            scale = scale * gamma_v.double()
        shift = -mean_v.double() * scale
        if beta_v is not None:
            shift = shift + beta_v.double()

        if producer.target == aten.convolution.default:
            ok = self._into_convolution(gm, producer, scale, shift)
        elif producer.target in (aten.addmm.default, aten.mm.default):
            ok = self._into_matmul(gm, producer, scale, shift)
        else:
            ok = False
        if not ok:
            return 0
        for u in users:
            if u.args[1] == 0:
                u.replace_all_uses_with(producer)
            gm.graph.erase_node(u)
        gm.graph.erase_node(bn)
        return 1

    def _into_convolution(self, gm, conv: fx.Node, scale, shift) -> bool:
        x, weight, bias, stride, padding, dilation, transposed, output_padding, groups = conv.args
        if transposed:
            return False
        w = evaluate(weight)
        b = evaluate(bias) if bias is not None else None
        if w is None or (bias is not None and b is None):
            return False
        shape = (-1,) + (1,) * (w.dim() - 1)
        new_w = (w.double() * scale.view(shape)).to(w.dtype)
        old_b = b.double() if b is not None else torch.zeros_like(scale)
        new_b = (old_b * scale + shift).to(w.dtype)
        w_node = add_constant(gm, new_w, f"{conv.name}_weight_bn", before=conv)
        b_node = add_constant(gm, new_b, f"{conv.name}_bias_bn", before=conv)
        conv.args = (x, w_node, b_node, stride, padding, dilation, transposed, output_padding, groups)
        return True

    def _into_matmul(self, gm, mm: fx.Node, scale, shift) -> bool:
        if mm.target == aten.addmm.default:
            bias, x, weight_t = mm.args[:3]
            if mm.kwargs.get("beta", 1) != 1 or mm.kwargs.get("alpha", 1) != 1:
                return False
            b = evaluate(bias)
            if b is None or b.dim() > 1:
                return False
        else:
            x, weight_t = mm.args
            b = None
        w_t = evaluate(weight_t)  # (in, out): BatchNorm1d's channels are the columns
        if w_t is None or w_t.dim() != 2 or w_t.shape[1] != scale.numel():
            return False
        new_w = (w_t.double() * scale.view(1, -1)).to(w_t.dtype)
        old_b = b.double().expand(scale.shape) if b is not None else torch.zeros_like(scale)
        new_b = (old_b * scale + shift).to(w_t.dtype)
        w_node = add_constant(gm, new_w, f"{mm.name}_weight_bn", before=mm)
        b_node = add_constant(gm, new_b, f"{mm.name}_bias_bn", before=mm)
        mm.target = aten.addmm.default
        mm.args, mm.kwargs = (b_node, x, w_node), {}
        return True


def _inference_batch_norm_args(node: fx.Node):
    """(input, gamma, beta, running_mean, running_var, eps) of an eval-mode batch norm, else None."""
    if node.op != "call_function":
        return None
    if node.target == aten._native_batch_norm_legit_no_training.default:
        x, gamma, beta, mean, var, _momentum, eps = node.args
        return x, gamma, beta, mean, var, eps
    if node.target in (aten.native_batch_norm.default, aten._native_batch_norm_legit.default):
        if len(node.args) == 8 and node.args[5] is False:
            x, gamma, beta, mean, var, _training, _momentum, eps = node.args
            return x, gamma, beta, mean, var, eps
    return None
