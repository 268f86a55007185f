"""prune-heads: removes whole attention heads, so that the attention projections shrink (lossy)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from .activation_stats import gram_matrices
from .attention_heads import HeadGroup, head_groups, prune_heads
from .base import register
from .channel_groups import node_named, activation_index, weight_matrix
from .context import PassContext
from .lossy import LossyPass, Proposal


@register
@dataclass(frozen=True)
class PruneHeads(LossyPass):
    """Removes about `fraction` of the attention heads, whole heads at a time: a head's rows of
    the q, k and v projections (of a fused qkv projection: its rows in each of the three parts)
    and their biases, its columns of the output projection, and the head count in every view,
    expand and split between them, so the matrices and the attention itself shrink.

    Which layers qualify is attention_heads.py's analysis: separate or fused q/k/v Linears, split
    into heads by views, through rotary embeddings, a causal mask, softmax and bmm or scaled dot
    product attention, back into one output projection. Left alone, with the reason in
    `head_groups`: grouped-query attention (shared key/value heads), per-head constants, head
    counts in sizes it cannot rewrite, anything else that mixes heads.

    Scores (per head h of a layer): `output-norm`: the root mean square over the calibration
    tokens of the head's contribution to the output projection, ||x_h W_o[:, h]^T||, computed
    from X^T X of the projection's input (x_h: the head's attention output); `magnitude`: the
    L2 norm of the head's weights (q/k/v rows, output columns; the naive baseline). Without
    calibration or example inputs `output-norm` falls back to `magnitude` (the proposal says so).

    Allocation: round(`fraction` x all heads) heads go, cheapest first by their share of their
    layer's summed score, no layer losing all of its heads nor more than twice `fraction` of them
    (at least one). One proposal per layer, sensitivity = the share it removes per
    head removed; `retry` offers a left-out layer at half its heads.

    Cost: accuracy, by how much depends on the model; the measured loss is held to the budget.
    """
    name = "prune-heads"
    fraction: float = 0.25
    score: str = "output-norm"

    def __post_init__(self):
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, (int, float)) \
                or not 0 < self.fraction < 1:
            raise ValueError(f"pass 'prune-heads': option fraction={self.fraction!r} is not valid "
                             "(expected a number in (0, 1))")
        if self.score not in ("output-norm", "magnitude"):
            raise ValueError(f"pass 'prune-heads': option score={self.score!r} is not valid "
                             "(expected one of output-norm, magnitude)")

    # -- the protocol -----------------------------------------------------------------------------
    def propose(self, gm: fx.GraphModule, ctx: PassContext) -> list[Proposal]:
        layers = self.layers(gm, ctx)
        removed = allocate(layers, self.fraction)
        return _sorted([self._proposal(layer, k) for layer, k in zip(layers, removed) if k > 0])

    def retry(self, gm: fx.GraphModule, ctx: PassContext, left_out: list[Proposal]) -> list[Proposal]:
        present = {n.name for n in gm.graph.nodes}
        again = [self._proposal(p.layer, p.removed // 2) for p in left_out
                 if isinstance(p, HeadProposal) and p.removed // 2 > 0
                 and all(name in present for name, _, _ in p.layer.group.producers)]
        return _sorted(again)

    # -- layers and scores ------------------------------------------------------------------------
    def layers(self, gm: fx.GraphModule, ctx: PassContext) -> list["_Layer"]:
        groups = [g for g in head_groups(gm) if g.prunable]
        if not groups:
            return []
        batches = ctx.inputs_for_fitting() if self.score == "output-norm" else []
        watched = {name: activation_index(node_named(gm, name)) for g in groups for name, _ in g.consumers}
        stats = gram_matrices(gm, watched, batches) if batches else {}
        layers = []
        for order, g in enumerate(groups):
            layer = _Layer(g, g.label(gm), order)
            use_output = self.score == "output-norm" and all(c in stats for c, _ in g.consumers)
            layer.scores = _output_norm(gm, g, stats) if use_output else _magnitude(gm, g)
            if self.score == "output-norm" and not use_output:
                layer.note = ("magnitude scores: no calibration or example inputs" if not batches
                              else "magnitude scores: the layer did not run on the calibration inputs")
            layer.params_per_head = _params_per_head(gm, g)
            layers.append(layer)
        return layers

    # -- proposals --------------------------------------------------------------------------------
    def _proposal(self, layer: "_Layer", removed: int) -> "HeadProposal":
        order = torch.argsort(layer.scores, stable=True)
        keep = sorted(int(h) for h in order[removed:])
        share = float(layer.scores[order[:removed]].sum() / layer.scores.sum().clamp_min(1e-30))
        heads = layer.group.heads
        what = (f"{layer.label}: {removed} of {heads} heads (keeps {keep})"
                + (f" ({layer.note})" if layer.note else ""))
        group = layer.group
        before = heads * layer.params_per_head * 4
        return HeadProposal(what, share / removed, lambda g: prune_heads(g, group, keep),
                            before, before - removed * layer.params_per_head * 4,
                            layer=layer, removed=removed)


@dataclass
class HeadProposal(Proposal):
    """A proposal that knows its layer and how many heads it removes, for `retry`."""
    layer: "_Layer | None" = None
    removed: int = 0


@dataclass(eq=False)
class _Layer:
    group: HeadGroup
    label: str
    order: int
    scores: torch.Tensor | None = None  # (heads,) float64, higher: more important
    params_per_head: int = 0
    note: str = ""


def _sorted(proposals: list[HeadProposal]) -> list[HeadProposal]:
    return sorted(proposals, key=lambda p: (p.sensitivity, p.layer.order))


def allocate(layers: list[_Layer], fraction: float) -> list[int]:
    """Heads to remove per layer (see PruneHeads): the globally cheapest by share of their layer's
    score, at most min(heads - 1, max(1, round(2 * fraction * heads))) from one layer."""
    removed = [0] * len(layers)
    target = round(fraction * sum(layer.group.heads for layer in layers))
    shares = [torch.sort(layer.scores).values / layer.scores.sum().clamp_min(1e-30) for layer in layers]
    for _ in range(target):
        best = None
        for i, layer in enumerate(layers):
            h, k = layer.group.heads, removed[i]
            if k + 1 > min(h - 1, max(1, round(2 * fraction * h))):
                continue
            cost = float(shares[i][k])
            if best is None or cost < best[0]:
                best = (cost, i)
        if best is None:
            break
        removed[best[1]] += 1
    return removed


def _output_norm(gm: fx.GraphModule, g: HeadGroup, stats: dict) -> torch.Tensor:
    """RMS over tokens of each head's contribution to its output projections' results."""
    s = torch.zeros(g.heads, dtype=torch.float64)
    for name, dim in g.consumers:
        w = weight_matrix(node_named(gm, name)).double()       # (out, heads * dim)
        gram = stats[name]
        for h in range(g.heads):
            cols = slice(h * dim, (h + 1) * dim)
            wh = w[:, cols]
            energy = torch.einsum("oi,ij,oj->", wh, gram.matrix[cols, cols], wh)
            s[h] += float(energy.clamp_min(0) / max(gram.rows, 1)) ** 0.5
    return s


def _magnitude(gm: fx.GraphModule, g: HeadGroup) -> torch.Tensor:
    s = torch.zeros(g.heads, dtype=torch.float64)
    for h in range(g.heads):
        for name, _, _ in g.producers:
            s[h] += weight_matrix(node_named(gm, name)).double()[g.producer_rows(name, [h])].pow(2).sum()
        for name, _ in g.consumers:
            s[h] += weight_matrix(node_named(gm, name)).double()[:, g.consumer_columns(name, [h])].pow(2).sum()
    return s.sqrt()


def _params_per_head(gm: fx.GraphModule, g: HeadGroup) -> int:
    n = 0
    for name, outer, dim in g.producers:
        node = node_named(gm, name)
        w = weight_matrix(node)
        bias = node.args[0] is not None if node.target is torch.ops.aten.addmm.default else False
        n += outer * dim * (w.shape[1] + bias)
    for name, dim in g.consumers:
        n += dim * weight_matrix(node_named(gm, name)).shape[0]
    return n
