"""sparse-2to4: linear layers with frozen weights become 2:4 semi-structured sparse products (lossy)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.fx as fx

from fastc.ir.constants import add_constant
from fastc.ir.printer import node_scope
from fastc.kernels import semi_structured

from .activation_stats import gram_matrices
from .base import register
from .context import PassContext
from .lossy import LossyPass, Proposal, Proposals
from .products import ProductMatch, match_product, product_operands, relative_output_error, replace_product


@register
@dataclass(frozen=True)
class Sparse2to4(LossyPass):
    """Makes the weights of matrix products 2:4 sparse (in every row, 2 of each 4 consecutive
    input columns are zeroed) and replaces each product by `fastc.linear_2to4`, which on CUDA runs
    on the 2:4 sparse tensor cores through torch's semi-structured sparse tensors (cuSPARSELt or
    CUTLASS, compute capability 8.0+; kernels/semi_structured.py).

    Matched (passes/products.py): `aten.mm(x, Wt)`, `aten.addmm(b, x, Wt)` and `aten.linear(x, W, b)`
    with a floating-point constant weight (through constant views) and a constant bias or none; not
    layers with fewer than `min_features` inputs or outputs.

    Only where a kernel exists: a layer whose weight cannot use the sparse kernel
    (semi_structured.kernel_refusal: a device older than 8.0, a dtype or shape the kernel does not
    take, such as float32 weights with cuSPARSELt) is not proposed, with the reason as a note. On
    CPU (the cpu, aten and triton-interpret targets: weights not on CUDA) the pass proposes nothing
    at all: a 2:4-masked weight would run there as a dense product, as slow as before and less
    accurate, so the pass is refused, with one note for the graph saying so (the report lists it
    and the compile warns); prune-channels is the pass that makes CPU products smaller.

    Which 2 of 4 stay: `score` "wanda" (default; Sun et al. 2023): |W_ij| * ||X_j||_2, X_j the
    product's input column j over the calibration inputs (else the example inputs; with neither, or
    where the layer did not run on them, magnitude scores, and the proposal says so); "magnitude":
    |W_ij|. Ties keep the lower column.

    One proposal per layer, sensitivity = the layer's relative output error
    tr(dW H dW^T) / tr(W H W^T) with H = X^T X of its inputs (||dW||^2 / ||W||^2 without inputs),
    least first; no retry (there is no gentler 2:4). Each replaces the product by
    `fastc.linear_2to4(x, W_masked, bias)`, W_masked (out, in) a new constant in the weight's dtype
    and device, and erases the old weight and its views where nothing else reads them. Weight
    bytes in the graph stay the same (the masked weight is dense); the compressed form (half the
    values plus index metadata) is built from it at the first call on CUDA and cached.
    """
    name = "sparse-2to4"
    score: Literal["wanda", "magnitude"] = "wanda"
    min_features: int = 16

    def __post_init__(self):
        if self.score not in ("wanda", "magnitude"):
            raise ValueError(f"pass 'sparse-2to4': option score={self.score!r} is not valid "
                             "(expected one of wanda, magnitude)")
        if isinstance(self.min_features, bool) or not isinstance(self.min_features, int) or self.min_features < 1:
            raise ValueError(f"pass 'sparse-2to4': option min_features={self.min_features!r} is not valid "
                             "(expected an integer >= 1)")

    def propose(self, gm: fx.GraphModule, ctx: PassContext) -> Proposals:
        layers, notes = [], []
        off_cuda: dict[str, int] = {}  # refusal of weights not on CUDA -> how many layers
        for order, node in enumerate(gm.graph.nodes):
            match = match_product(node)
            if match is None or min(match.weight.shape) < self.min_features:
                continue
            scope = node_scope(node)
            label = f"{scope[0]} ({node.name})" if scope else node.name
            reason = semi_structured.kernel_refusal(match.weight)
            if reason is not None and match.weight.device.type != "cuda":
                off_cuda[reason] = off_cuda.get(reason, 0) + 1
            elif reason is not None:
                notes.append(f"{label}: {reason}")
            elif match.weight.shape[1] % 4:
                notes.append(f"{label}: {match.weight.shape[1]} inputs, not a multiple of 4")
            else:
                layers.append((order, node.name, label, match))
        for reason, count in off_cuda.items():
            notes.insert(0, f"{reason}; {count} matched product{'s' if count > 1 else ''} left as "
                            f"{'they are' if count > 1 else 'it is'}")
        if not layers:
            return Proposals([], notes)
        batches = ctx.inputs_for_fitting()
        stats = gram_matrices(gm, {name: m.x_index for _, name, _, m in layers}, batches) if batches else {}
        proposals = [self._proposal(order, name, label, m, stats.get(name), bool(batches))
                     for order, name, label, m in layers]
        proposals.sort(key=lambda p: (p.sensitivity, p.order))
        return Proposals(proposals, notes)

    def _proposal(self, order: int, node_name: str, label: str, match: ProductMatch, gram, had_inputs: bool):
        weight = match.weight.detach()
        w = weight.double().cpu()
        hessian = gram.matrix if gram is not None and gram.rows > 0 else None
        kind, note = self.score, ""
        if self.score == "wanda" and hessian is not None:
            scores = w.abs() * hessian.diagonal().clamp_min(0).sqrt()
        else:
            scores = w.abs()
            if self.score == "wanda":
                kind = "magnitude"
                note = (" (no calibration or example inputs)" if not had_inputs
                        else " (the layer did not run on the calibration inputs)")
        mask = semi_structured.two_four_mask(scores)
        error = relative_output_error(w, torch.where(mask, w, 0.0), hessian)
        masked = torch.where(mask.to(weight.device), weight, torch.zeros((), dtype=weight.dtype,
                                                                          device=weight.device)).contiguous()
        nbytes = weight.numel() * weight.element_size()
        hint, x_index = f"{match.weight_node.name}_2to4", match.x_index
        return _Proposal(f"{label}: 2:4 sparse, {kind} scores{note}", error,
                         lambda g: _rewrite(g, node_name, x_index, masked, hint), nbytes, nbytes, order=order)


@dataclass
class _Proposal(Proposal):
    order: int = 0  # position of the product in the graph: ties in sensitivity keep graph order


def _rewrite(g: fx.GraphModule, node_name: str, x_index: int, masked: torch.Tensor, hint: str) -> None:
    """Replaces the product `node_name` in `g` by fastc.linear_2to4 on the masked weight."""
    node = next(n for n in g.graph.nodes if n.name == node_name)
    bias = product_operands(node)[2]
    weight = add_constant(g, masked, hint=hint, before=node)
    replace_product(g, node, torch.ops.fastc.linear_2to4.default, (node.args[x_index], weight, bias),
                    f"{node.name}_2to4")
