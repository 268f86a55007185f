"""shift-add: linear layers with frozen weights become BCQ shift-and-add products (lossy)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.fx as fx
from torch.utils._pytree import tree_flatten

from fastc.ir.constants import add_constant
from fastc.ir.printer import node_scope
from fastc.kernels.bcq import PackedBCQ, bcq_quantize, dequantize, pack

from .activation_stats import Gram, gram_matrices, swapped_outputs
from .base import register
from .context import PassContext
from .lossy import LossyPass, Proposal
from .metrics import MetricError, main_output, run_graph
from .products import match_product, product_operands, relative_output_error, replace_product


#: At most this many rows of the main output (positions: its elements over its last dimension)
#: are run again for each (layer, bits) that `sensitivity=output` measures.
PROBE_ROWS = 1024


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

    `sensitivity`: what a layer's error at b bits, e(b), is. "output" (default): the error of the
    model's output when that layer alone is quantized at b bits, measured on at most PROBE_ROWS
    (1024) rows of the calibration batches (the first batches; the last one cut along its batch
    dimension where the graph runs on fewer samples): the graph runs once, and at each layer the
    rest of it runs again from there with the layer's product computed on its dequantized weight
    (activation_stats.swapped_outputs; the quantized weights are those the pass proposes). The
    error is the mean KL(softmax(original) || softmax(quantized)) over the last dimension of the
    main output (the first floating-point output with more than one entry in its last dimension,
    as metrics.main_output: class or token scores), else, without one, the squared relative L2
    error of all floating-point outputs (KL: it is what bpc and cross-entropy pay; on char-lm it
    gave +0.0205 / +0.1177 bpc at 3 / 2 bits, the squared relative L2 of the logits +0.0197 /
    +0.1231). These errors add up across layers (char-lm, 3 bits, 8192 rows: the KL of all 43
    layers quantized together 0.012933, the sum of the 43 alone 0.012924), and rank layers unlike
    the per-layer proxy does (Spearman 0.35 between the two; 0.97 between 1024 rows and 8192): a
    layer whose output a later one amplifies, or the classifier head, costs more than its own
    relative error says. Few rows make it noisy: digits-vit's 64 calibration images give 64 rows,
    and there mixed bits by output error did not help (2 bits: accuracy 0.975 against 0.981
    uniform).
    "layer", and "output" without calibration or example inputs: the layer's own relative output
    error e(b) = tr(dW H dW^T) / tr(W H W^T) with H of its inputs (else the weight's relative
    Frobenius error), weighted by its parameter count in the allocation.

    `mixed`: per-layer bits (1 to max(max_bits, ceil(bits))) that minimise the summed error
    (sum of e(b) with "output"; sum of params * e(b) with "layer") with the parameter-weighted
    average at most `bits`: every layer starts at floor(bits); a greedy exchange then repeatedly
    takes the best of (a) one more bit for the layer that gains most per bit while the average
    allows it, and (b) one more bit for one layer and one fewer for another, if the sum goes down,
    until neither helps. Without `mixed` every layer gets `bits` rounded (halves down). With
    "output", mixed bits beat uniform ones on char-lm (bpc +0.0205 against +0.0309 at 3 bits,
    +0.1177 against +0.1532 at 2); with the "layer" proxy they did not (+0.0335 at 3 bits; at 2
    bits it kept every layer at 2).

    One proposal per layer; sensitivity = e(b) / (the layer's share of the rewritten parameters),
    the error paid per byte saved, so a large layer that is cheap in accuracy comes first and
    small sensitive ones (a classifier head) last. `retry` offers the left-out layers at one bit
    more, up to `max_bits`. Cost: the accuracy of `bits` bits per weight, and compile time: each
    (layer, bits) is quantized once, about 1 s for a 64 x 256 weight at rounds=10 on 2 CPU cores
    (plain or activation-aware alike), and `mixed` quantizes most layers at three bit widths
    (floor(bits) - 1 to floor(bits) + 1), each measured by "output" in one walk over the graph
    per batch (for each, about what running the graph after that layer on the rows costs):
    char-lm's propose, 1 torch thread, 3 bits, about 5 s with "layer", 9 s with "output".
    """
    name = "shift-add"
    bits: float = 3
    group_size: int = 128
    mixed: bool = True
    activation_aware: bool = True
    sensitivity: Literal["output", "layer"] = "output"
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
        # The bit widths the allocation will look at, measured in one walk over the graph.
        low = max(1, min(self._ceiling(), math.floor(self.bits)))
        widths = range(max(1, low - 1), min(self._ceiling(), low + 1) + 1) if self.mixed \
            else [max(1, math.ceil(self.bits - 0.5))]
        self._measure([(layer, b) for layer in layers for b in widths])
        allocation = self._allocate(layers)
        return _sorted([self._proposal(layer, allocation[layer.node]) for layer in layers])

    def retry(self, gm: fx.GraphModule, ctx: PassContext, left_out: list[Proposal]) -> list[Proposal]:
        present = {n.name for n in gm.graph.nodes}
        again = [p for p in left_out
                 if isinstance(p, ShiftAddProposal) and p.bits < self._ceiling() and p.layer.node in present]
        self._measure([(p.layer, p.bits + 1) for p in again])
        return _sorted([self._proposal(p.layer, p.bits + 1) for p in again])

    # -- layers -----------------------------------------------------------------------------------
    def _layers(self, gm: fx.GraphModule, ctx: PassContext) -> list["_Layer"]:
        layers = []
        for order, node in enumerate(gm.graph.nodes):
            match = match_product(node)
            if match is None:
                continue
            weight = match.weight
            out_features, in_features = weight.shape
            if min(out_features, in_features) < self.min_features:
                continue
            group = group_size_for(in_features, self.group_size)
            if group is None:
                continue
            scope = node_scope(node)
            label = f"{scope[0]} ({node.name})" if scope else node.name
            layers.append(_Layer(node.name, label, order, match.x_index, weight.detach().float().cpu().contiguous(),
                                 weight.element_size() * weight.numel(), match.weight_node.name, group,
                                 weight.device, match.w_index, match.transposed, node.target))
        batches = ctx.inputs_for_fitting()
        stats: dict[str, Gram] = {}
        if layers and batches:
            shapes: list[tuple[int, int | None]] = []  # per batch: rows of the main output, its batch size
            stats = gram_matrices(gm, {layer.node: layer.x_index for layer in layers}, batches,
                                  lambda i, out: shapes.append(_rows(out)))
            if self.sensitivity == "output":
                probe = _Probe.build(gm, batches, shapes, PROBE_ROWS)
                for layer in layers:
                    layer.probe = probe
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
            error = relative_output_error(layer.weight, dequantize(packed), layer.hessian)
            layer.cache[bits] = (packed, error)
        return layer.cache[bits]

    def _error(self, layer: "_Layer", bits: int) -> float:
        """What the allocation and the proposals weigh: with `sensitivity=output` (and calibration
        inputs), the model-output error of quantizing this layer alone (_Probe); else the layer's
        relative output error (`_relative_error`)."""
        if layer.probe is None:
            return self._quantized(layer, bits)[1]
        if bits not in layer.output_errors:
            self._measure([(layer, bits)])
        return layer.output_errors[bits]

    def _cost(self, layer: "_Layer", bits: int) -> float:
        """A layer's term in the summed error the allocation minimises: its output error as it is
        (errors of the model's output, assumed additive over layers), or its relative error
        weighted by its parameters."""
        error = self._error(layer, bits)
        return error if layer.probe is not None else layer.params * error

    def _measure(self, wanted: list[tuple["_Layer", int]]) -> None:
        """Output errors of the (layer, bits) not measured yet, all in one walk per batch."""
        wanted = [(layer, b) for layer, b in wanted if layer.probe is not None and b not in layer.output_errors]
        for probe in {id(layer.probe): layer.probe for layer, _ in wanted}.values():
            mine = [(layer, b) for layer, b in wanted if layer.probe is probe]
            errors = probe.errors([(layer, b, dequantize(self._quantized(layer, b)[0])) for layer, b in mine])
            for layer, b in mine:
                layer.output_errors[b] = errors.get((layer.node, b), 0.0)

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
            return None if b >= ceiling else self._cost(layer, b) - self._cost(layer, b + 1)

        def loss_down(layer):  # summed error added by one bit fewer (None: at 1 bit)
            b = bits[layer.node]
            return None if b <= 1 else self._cost(layer, b - 1) - self._cost(layer, b)

        while True:
            total = sum(self._cost(layer, bits[layer.node]) for layer in layers)
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
        packed = self._quantized(layer, bits)[0].to(layer.device)
        what = f"{layer.label}: {bits} bits" + (f" ({layer.note})" if layer.note else "")
        return ShiftAddProposal(what, self._error(layer, bits) / layer.share, lambda g: _rewrite(g, layer, packed),
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
    w_index: int = 1     # which argument of the product is the weight operand
    transposed: bool = True  # that operand is W^T (in, out) (mm, addmm), else W (linear)
    target: object = None  # the product's op
    hessian: torch.Tensor | None = None  # X^T X of its inputs, when they were seen
    fit_hessian: bool = False  # enough rows to quantize against it (else it only measures errors)
    note: str = ""       # why it is not activation-aware, when it is not
    share: float = 1.0   # its share of the parameters of all matched layers
    cache: dict = field(default_factory=dict)  # bits -> (PackedBCQ, relative error)
    probe: "_Probe | None" = None  # measures output errors (sensitivity=output, with calibration)
    output_errors: dict = field(default_factory=dict)  # bits -> the model-output error, alone

    @property
    def params(self) -> int:
        return self.weight.numel()


def _sorted(proposals: list[ShiftAddProposal]) -> list[ShiftAddProposal]:
    return sorted(proposals, key=lambda p: (p.sensitivity, p.layer.order))


# -- end-to-end sensitivity --------------------------------------------------------------------
def _main(outputs: list) -> int | None:
    """The index of the main output (metrics.main_output: class or token scores), else None."""
    try:
        return main_output(outputs)
    except MetricError:
        return None


def _rows(out) -> tuple[int, int | None]:
    """(rows, batch size) of a graph's output: the main output's elements over its last dimension
    and its first dimension, else those of the first floating-point output, else (1, None)."""
    flat = tree_flatten(out)[0]
    i = _main(flat)
    if i is None:
        i = next((j for j, o in enumerate(flat) if isinstance(o, torch.Tensor) and o.is_floating_point()), None)
    if i is None or flat[i].dim() == 0:
        return 1, None
    o = flat[i]
    return max(1, o.numel() // max(1, o.shape[-1])), o.shape[0]


@dataclass(eq=False)
class _Probe:
    """The model-output error of quantizing one layer alone, on calibration (fitting) batches of
    at most `PROBE_ROWS` rows: each (layer, bits) swaps the layer's product for one with the
    dequantized weight and runs the rest of the graph (activation_stats.swapped_outputs).

    The error: with a main output (class or token scores: metrics.main_output), the mean over its
    rows of KL(softmax(original) || softmax(quantized)) over the last dimension; else the squared
    relative L2 error of all floating-point outputs, sum ||dy||^2 / sum ||y||^2. Both are about
    quadratic in small weight errors, so independent layers' errors about add up."""
    gm: fx.GraphModule
    batches: list[list]
    references: list       # per batch: log-softmax of the main output, or its floating outputs
    main: int | None       # the main output's index (KL), or None (relative L2)
    rows: int              # rows of the main output over `batches`
    norm: float = 0.0      # sum ||y||^2 of the floating outputs (relative L2)

    @staticmethod
    def build(gm: fx.GraphModule, batches: list[list], shapes: list[tuple[int, int | None]],
              limit: int) -> "_Probe":
        """The batches (the first of `batches`, the last one cut along its batch dimension where
        that runs) with at most about `limit` rows, and the graph's outputs on them."""
        chosen, outputs, rows = [], [], 0
        for batch, (n, size) in zip(batches, shapes):
            if rows >= limit:
                break
            out = None
            if rows + n > limit and size is not None and size > 2:
                keep = max(2, math.ceil((limit - rows) * size / n))
                if keep < size:
                    cut = [t[:keep] if isinstance(t, torch.Tensor) and t.dim() >= 1 and t.shape[0] == size else t
                           for t in batch]
                    try:  # a graph with static shapes may not run on fewer samples: then all of them
                        out = run_graph(gm, cut)
                    except RuntimeError:
                        out = None
                    if out is not None and _rows(out)[1] == keep:
                        batch = cut
                    else:
                        out = None
            out = run_graph(gm, batch) if out is None else out
            chosen.append(batch)
            outputs.append(tree_flatten(out)[0])
            rows += _rows(out)[0]
        mains = {_main(o) for o in outputs}
        main = mains.pop() if len(mains) == 1 else None
        if main is not None:
            references = [torch.log_softmax(o[main].detach().float(), -1) for o in outputs]
            return _Probe(gm, chosen, references, main, rows)
        references = [[t.detach().double() if _floating(t) else None for t in o] for o in outputs]
        norm = sum(float((t * t).sum()) for o in references for t in o if t is not None)
        return _Probe(gm, chosen, references, None, rows, norm)

    def errors(self, wanted: list[tuple["_Layer", int, torch.Tensor]]) -> dict[tuple[str, int], float]:
        """(layer node, bits) -> the output error with that layer's weight replaced by the given
        dequantized one (out x in), every other layer as it is."""
        swaps: dict[str, list] = {}
        for layer, bits, dequantized in wanted:
            swaps.setdefault(layer.node, []).append(((layer.node, bits), _swap(layer, dequantized)))
        sums: dict[tuple[str, int], float] = {}
        for batch, reference in zip(self.batches, self.references):
            def report(key, out, reference=reference):
                flat = tree_flatten(out)[0]
                if self.main is not None:
                    q = torch.log_softmax(flat[self.main].float(), -1)
                    p = reference.exp()
                    value = float(torch.where(p > 0, p * (reference - q), 0.0).sum())
                else:
                    value = sum(float(((t.double() - r) ** 2).sum())
                                for t, r in zip(flat, reference) if r is not None)
                sums[key] = sums.get(key, 0.0) + value
            swapped_outputs(self.gm, batch, swaps, report)
        scale = self.rows if self.main is not None else self.norm
        # A NaN (the quantized graph broke) is as bad as it gets: infinite, proposed last.
        return {key: math.inf if math.isnan(value) else max(0.0, value) / (scale if scale > 0 else 1.0)
                for key, value in sums.items()}


def _floating(t) -> bool:
    return isinstance(t, torch.Tensor) and t.is_floating_point()


def _swap(layer: "_Layer", dequantized: torch.Tensor):
    """The layer's product computed from its fetched operands with the dequantized weight."""
    def value_of(args, kwargs):
        args = list(args)
        operand = args[layer.w_index]
        w = dequantized.to(dtype=operand.dtype, device=operand.device)
        args[layer.w_index] = w.t() if layer.transposed else w
        return layer.target(*args, **kwargs)
    return value_of


def group_size_for(in_features: int, wanted: int) -> int | None:
    """`wanted` if it divides in_features, else the largest divisor of in_features that is a
    multiple of 8 and at most `wanted`; None if there is none."""
    if in_features % wanted == 0:
        return wanted
    for d in range(min(wanted, in_features) // 8 * 8, 0, -8):
        if in_features % d == 0:
            return d
    return None


# -- the rewrite -------------------------------------------------------------------------------
def _rewrite(g: fx.GraphModule, layer: _Layer, packed: PackedBCQ) -> None:
    """Replaces `layer`'s product in `g` (found by name) by fastc.bcq_linear on new constants."""
    node = next(n for n in g.graph.nodes if n.name == layer.node)
    bias = product_operands(node)[2]
    bits = add_constant(g, packed.bits, hint=f"{layer.weight_name}_bcq_bits", before=node)
    scales = add_constant(g, packed.scales, hint=f"{layer.weight_name}_bcq_scales", before=node)
    replace_product(g, node, torch.ops.fastc.bcq_linear.default,
                    (node.args[layer.x_index], bits, scales, bias, packed.group_size, packed.in_features),
                    f"{node.name}_bcq")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)
