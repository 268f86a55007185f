"""shift-add: linear layers with frozen weights become BCQ shift-and-add products (lossy)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten

from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.ir.op_facts import VIEW_OPS
from fastc.ir.printer import node_scope
from fastc.kernels.bcq import PackedBCQ, bcq_quantize, dequantize, pack

from .activation_stats import Gram, gram_matrices
from .base import register
from .context import PassContext
from .lossy import LossyPass, Proposal

aten = torch.ops.aten

#: Node metadata the new product keeps from the one it replaces (the kernel plan is not kept).
_KEPT_META = ("val", "tensor_meta", "type", "nn_module_stack", "fwd_nn_module_stack",
              "source_fn_stack", "stack_trace")


@register
@dataclass(frozen=True)
class ShiftAdd(LossyPass):
    """Replaces matrix products with a frozen weight by `fastc.bcq_linear` on a BCQ-packed weight.

    Matched: `aten.mm(x, Wt)`, `aten.addmm(b, x, Wt)` (beta = alpha = 1) and `aten.linear(x, W, b)`,
    where the weight is a floating-point constant, possibly read through views with constant
    arguments (the (in, out) operand of a Linear is `permute(W, [1, 0])`), and the bias is absent
    or a 1-D constant of the output size. Not matched: bmm (attention), convolutions, embeddings,
    products of two activations, and layers with fewer than `min_features` inputs or outputs.
    Each matched weight W (out x in) becomes `bits` {-1, +1} planes with per-group fp16 scales,
    W ~ sum_i alpha_i B_i (ShiftAddLLM; kernels/bcq, docs/bcq.md), so the product is additions
    (and shifts, with `pow2`). Groups are `group_size` input columns; a layer whose in_features it
    does not divide uses the largest divisor of in_features that is a multiple of 8 and at most
    `group_size` (Triton's kernels need a multiple of 32, else the reference path runs), and a
    layer with no such divisor is left as it is.

    `activation_aware`: quantizes against H = X^T X of the layer's inputs on the calibration
    batches (else the example inputs). With neither, or with fewer rows than the layer has inputs
    (H singular: fitting to it overfits those rows), it is plain BCQ, and the proposal says so.
    H, when known, also measures each layer's relative output error e(b) = tr(dW H dW^T) / tr(W H W^T)
    (else the weight's relative Frobenius error). `mixed`: per-layer bits (1 to max(max_bits,
    ceil(bits))) that minimise sum(params * e(b)) with the parameter-weighted average at most
    `bits`: every layer starts at floor(bits); a greedy exchange then repeatedly takes the best of
    (a) one more bit for the layer that gains most per bit while the average allows it, and
    (b) one more bit for one layer and one fewer for another, if the sum goes down, until neither
    helps. Without `mixed` every layer gets `bits` rounded (halves down).

    One proposal per layer; sensitivity = e(b) / (the layer's share of the rewritten parameters),
    the error paid per byte saved, so a large layer that is cheap in accuracy comes first and
    small sensitive ones (a classifier head) last. `retry` offers the left-out layers at one bit
    more, up to `max_bits`. Cost: the accuracy of `bits` bits per weight, and compile time: each
    (layer, bits) is quantized once, about 1 s for a 64 x 256 weight at rounds=10 on 2 CPU cores
    (plain or activation-aware alike), and `mixed` quantizes most layers at three bit widths.
    """
    name = "shift-add"
    bits: float = 3
    group_size: int = 128
    mixed: bool = True
    activation_aware: bool = True
    pow2: bool = False
    max_bits: int = 4
    rounds: int = 10
    min_features: int = 8

    def __post_init__(self):
        def bad(option, value, expected):
            shown = f"{value:g}" if isinstance(value, float) else repr(value)
            return ValueError(f"pass 'shift-add': option {option}={shown} is not valid (expected {expected})")
        if isinstance(self.bits, bool) or not isinstance(self.bits, (int, float)) \
                or not 1 <= self.bits <= 8:
            raise bad("bits", self.bits, "a number in [1, 8]")
        if not _is_int(self.group_size) or self.group_size < 8:
            raise bad("group_size", self.group_size, "an integer >= 8")
        if not _is_int(self.max_bits) or not 1 <= self.max_bits <= 8:
            raise bad("max_bits", self.max_bits, "an integer in [1, 8]")
        if not _is_int(self.rounds) or self.rounds < 0:
            raise bad("rounds", self.rounds, "an integer >= 0")
        if not _is_int(self.min_features) or self.min_features < 1:
            raise bad("min_features", self.min_features, "an integer >= 1")

    # -- the protocol -----------------------------------------------------------------------------
    def propose(self, gm: fx.GraphModule, ctx: PassContext) -> list[Proposal]:
        layers = self._layers(gm, ctx)
        if not layers:
            return []
        allocation = self._allocate(layers)
        return _sorted([self._proposal(layer, allocation[layer.node]) for layer in layers])

    def retry(self, gm: fx.GraphModule, ctx: PassContext, left_out: list[Proposal]) -> list[Proposal]:
        present = {n.name for n in gm.graph.nodes}
        again = [self._proposal(p.layer, p.bits + 1) for p in left_out
                 if isinstance(p, ShiftAddProposal) and p.bits < self._ceiling() and p.layer.node in present]
        return _sorted(again)

    # -- layers -----------------------------------------------------------------------------------
    def _layers(self, gm: fx.GraphModule, ctx: PassContext) -> list["_Layer"]:
        layers = []
        for order, node in enumerate(gm.graph.nodes):
            match = _match(node)
            if match is None:
                continue
            x_index, weight, weight_root = match
            out_features, in_features = weight.shape
            if min(out_features, in_features) < self.min_features:
                continue
            group = _group_size(in_features, self.group_size)
            if group is None:
                continue
            scope = node_scope(node)
            label = f"{scope[0]} ({node.name})" if scope else node.name
            layers.append(_Layer(node.name, label, order, x_index, weight.detach().float().cpu().contiguous(),
                                 weight.element_size() * weight.numel(), weight_root.name, group,
                                 weight.device))
        batches = ctx.inputs_for_fitting()
        stats: dict[str, Gram] = {}
        if layers and batches:
            stats = gram_matrices(gm, {layer.node: layer.x_index for layer in layers}, batches)
        total = sum(layer.params for layer in layers)
        for layer in layers:
            layer.share = layer.params / total
            gram = stats.get(layer.node)
            if gram is not None and gram.rows > 0:
                layer.hessian = gram.matrix
                # Fewer rows than inputs: H is singular, and fitting to it overfits those rows.
                layer.fit_hessian = gram.rows >= layer.weight.shape[1]
            if self.activation_aware and not layer.fit_hessian:
                layer.note = ("plain BCQ: no calibration or example inputs" if not batches
                              else "plain BCQ: the layer did not run on the calibration inputs" if gram is None
                              else f"plain BCQ: {gram.rows} calibration rows, fewer than its "
                                   f"{layer.weight.shape[1]} inputs")
        return layers

    def _quantized(self, layer: "_Layer", bits: int) -> tuple[PackedBCQ, float]:
        """The packed weight at `bits` and its relative output error; each computed once."""
        if bits not in layer.cache:
            pow2_terms = 2 if self.pow2 else None
            hessian = layer.hessian if self.activation_aware and layer.fit_hessian else None
            try:
                q = bcq_quantize(layer.weight, bits, layer.group_size, self.rounds, pow2_terms, hessian=hessian)
            except ValueError as e:  # H + damp not positive definite: quantize without it
                if hessian is None:
                    raise
                layer.note = f"plain BCQ: {e}"
                q = bcq_quantize(layer.weight, bits, layer.group_size, self.rounds, pow2_terms)
            packed = pack(q, torch.float16)
            error = _relative_error(layer.weight, dequantize(packed), layer.hessian)
            layer.cache[bits] = (packed, error)
        return layer.cache[bits]

    def _error(self, layer: "_Layer", bits: int) -> float:
        return self._quantized(layer, bits)[1]

    # -- bits per layer ---------------------------------------------------------------------------
    def _ceiling(self) -> int:
        return max(self.max_bits, math.ceil(self.bits))

    def _allocate(self, layers: list["_Layer"]) -> dict[str, int]:
        """Bits per layer (see the class docstring): parameter-weighted average <= `bits`."""
        if not self.mixed:
            bits = max(1, math.ceil(self.bits - 0.5))
            return {layer.node: bits for layer in layers}
        ceiling = self._ceiling()
        bits = {layer.node: max(1, min(ceiling, math.floor(self.bits))) for layer in layers}
        budget = self.bits * sum(layer.params for layer in layers)
        spare = budget - sum(layer.params * bits[layer.node] for layer in layers)

        def gain_up(layer):  # summed error saved by one more bit (None: at the ceiling)
            b = bits[layer.node]
            return None if b >= ceiling else layer.params * (self._error(layer, b) - self._error(layer, b + 1))

        def loss_down(layer):  # summed error added by one bit fewer (None: at 1 bit)
            b = bits[layer.node]
            return None if b <= 1 else layer.params * (self._error(layer, b - 1) - self._error(layer, b))

        while True:
            total = sum(layer.params * self._error(layer, bits[layer.node]) for layer in layers)
            tiny = 1e-12 * max(total, 1e-30)
            # (a) one more bit for a layer, within the average: the best gain per bit spent.
            ups = [(gain / layer.params, layer) for layer in layers
                   if layer.params <= spare + 1e-9 * budget and (gain := gain_up(layer)) is not None and gain > tiny]
            if ups:
                _, layer = max(ups, key=lambda t: (t[0], -t[1].order))
                bits[layer.node] += 1
                spare -= layer.params
                continue
            # (b) a bit moved from one layer to another, if the summed error goes down.
            best = None
            for up in layers:
                gain = gain_up(up)
                if gain is None or gain <= tiny:
                    continue
                for down in layers:
                    if down is up or up.params - down.params > spare + 1e-9 * budget:
                        continue
                    loss = loss_down(down)
                    if loss is not None and gain - loss > tiny and (best is None or gain - loss > best[0]):
                        best = (gain - loss, up, down)
            if best is None:
                return bits
            _, up, down = best
            bits[up.node] += 1
            bits[down.node] -= 1
            spare -= up.params - down.params

    # -- proposals --------------------------------------------------------------------------------
    def _proposal(self, layer: "_Layer", bits: int) -> "ShiftAddProposal":
        packed, error = self._quantized(layer, bits)
        packed = packed.to(layer.device)
        what = f"{layer.label}: {bits} bits" + (f" ({layer.note})" if layer.note else "")
        return ShiftAddProposal(what, error / layer.share, lambda g: _rewrite(g, layer, packed),
                                layer.weight_bytes, packed.nbytes(), layer=layer, bits=bits)


@dataclass
class ShiftAddProposal(Proposal):
    """A proposal that knows its layer and bits, so that `retry` can offer it at more bits."""
    layer: "_Layer | None" = None
    bits: int = 0


@dataclass(eq=False)
class _Layer:
    node: str            # the product's node name
    label: str           # "layers.0.fc1 (addmm_3)", for reports
    order: int           # position in the graph: ties in sensitivity keep graph order
    x_index: int         # which argument of the product is the activation
    weight: torch.Tensor  # (out, in), float32, on the CPU (where the quantizer works)
    weight_bytes: int    # bytes of the constant it replaces, in its own dtype
    weight_name: str     # the weight constant's node name: hint for the new constants' names
    group_size: int
    device: torch.device  # where the weight was: the packed constants go there too
    hessian: torch.Tensor | None = None  # X^T X of its inputs, when they were seen
    fit_hessian: bool = False  # enough rows to quantize against it (else it only measures errors)
    note: str = ""       # why it is not activation-aware, when it is not
    share: float = 1.0   # its share of the parameters of all matched layers
    cache: dict = field(default_factory=dict)  # bits -> (PackedBCQ, relative error)

    @property
    def params(self) -> int:
        return self.weight.numel()


def _sorted(proposals: list[ShiftAddProposal]) -> list[ShiftAddProposal]:
    return sorted(proposals, key=lambda p: (p.sensitivity, p.layer.order))


# -- matching ----------------------------------------------------------------------------------
def _match(node: fx.Node):
    """(index of the activation argument, weight (out, in), weight constant node) when `node` is
    a matched product (see ShiftAdd), else None."""
    if node.op != "call_function":
        return None
    if node.target is aten.mm.default:
        x_index, operand, bias, transposed = 0, node.args[1], None, True
    elif node.target is aten.addmm.default:
        if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
            return None
        x_index, operand, bias, transposed = 1, node.args[2], node.args[0], True
    elif node.target is aten.linear.default:
        bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        x_index, operand, transposed = 0, node.args[1], False
    else:
        return None
    found = _constant_through_views(operand)
    if found is None:
        return None
    value, root = found
    if value.dim() != 2 or not value.is_floating_point():
        return None
    weight = value.t() if transposed else value
    if bias is not None:
        if not is_constant(bias):
            return None
        b = constant_value(bias)
        if b.dim() != 1 or b.shape[0] != weight.shape[0] or not b.is_floating_point():
            return None
    x = node.args[x_index]
    if not isinstance(x, fx.Node):
        return None
    return x_index, weight, root


def _constant_through_views(arg):
    """(value, constant node) of an operand that is a constant read through views whose other
    arguments are constants (literals), else None."""
    chain = []
    while isinstance(arg, fx.Node) and arg.op == "call_function" and arg.target in VIEW_OPS:
        chain.append(arg)
        arg = arg.args[0]
    if not is_constant(arg):
        return None
    value = constant_value(arg)
    if not isinstance(value, torch.Tensor):
        return None
    for view in reversed(chain):
        rest = tree_flatten((view.args[1:], view.kwargs))[0]
        if any(isinstance(a, (fx.Node, torch.SymInt)) for a in rest):
            return None
        value = view.target(value, *view.args[1:], **view.kwargs)
    return value, arg


def _group_size(in_features: int, wanted: int) -> int | None:
    """`wanted` if it divides in_features, else the largest divisor of in_features that is a
    multiple of 8 and at most `wanted`; None if there is none."""
    if in_features % wanted == 0:
        return wanted
    for d in range(min(wanted, in_features) // 8 * 8, 0, -8):
        if in_features % d == 0:
            return d
    return None


def _relative_error(weight: torch.Tensor, dequantized: torch.Tensor, hessian: torch.Tensor | None) -> float:
    """tr(dW H dW^T) / tr(W H W^T), or ||dW||^2 / ||W||^2 without H (or when W H W^T is 0)."""
    w = weight.double()
    dw = w - dequantized.double()
    if hessian is not None:
        denominator = float(((w @ hessian) * w).sum())
        if denominator > 0:
            return float(((dw @ hessian) * dw).sum()) / denominator
    denominator = float((w * w).sum())
    return float((dw * dw).sum()) / denominator if denominator > 0 else 0.0


# -- the rewrite -------------------------------------------------------------------------------
def _rewrite(g: fx.GraphModule, layer: _Layer, packed: PackedBCQ) -> None:
    """Replaces `layer`'s product in `g` (found by name) by fastc.bcq_linear on new constants."""
    node = next(n for n in g.graph.nodes if n.name == layer.node)
    if node.target is aten.addmm.default:
        bias, weight_arg = node.args[0], node.args[2]
    elif node.target is aten.linear.default:
        bias = node.args[2] if len(node.args) > 2 else node.kwargs.get("bias")
        weight_arg = node.args[1]
    else:
        bias, weight_arg = None, node.args[1]
    bits = add_constant(g, packed.bits, hint=f"{layer.weight_name}_bcq_bits", before=node)
    scales = add_constant(g, packed.scales, hint=f"{layer.weight_name}_bcq_scales", before=node)
    with g.graph.inserting_before(node):
        new = g.graph.create_node("call_function", torch.ops.fastc.bcq_linear.default,
                                  (node.args[layer.x_index], bits, scales, bias,
                                   packed.group_size, packed.in_features), name=f"{node.name}_bcq")
    new.meta.update({k: node.meta[k] for k in _KEPT_META if k in node.meta})
    node.replace_all_uses_with(new)
    g.graph.erase_node(node)
    # The weight and its views are dead unless something else reads them.
    while isinstance(weight_arg, fx.Node) and not weight_arg.users:
        source = weight_arg.args[0] if weight_arg.op == "call_function" else None
        g.graph.erase_node(weight_arg)
        weight_arg = source


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
