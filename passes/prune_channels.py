"""prune-channels: removes whole channels, so that weight matrices shrink (lossy)."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.fx as fx

from .base import register
from .channel_groups import (ChannelGroup, activation_index, channel_groups, prune_group,
                             weight_matrix, node_named)
from .context import PassContext
from .lossy import LossyPass, Proposal

aten = torch.ops.aten


@register
@dataclass(frozen=True)
class PruneChannels(LossyPass):
    """Removes the least important `sparsity` of the prunable channels' parameters, whole channels
    at a time, so every matrix they touch shrinks and dense kernels do less work.

    Which channels can go together is channel_groups.py's analysis: an MLP's hidden channels (the
    up projection's rows, the gate's too in a SwiGLU block, and the down projection's columns,
    through gelu/silu/mul), a convolution's output channels (its weight's rows and bias, the next
    BatchNorm's statistics, through relu, into the next convolution's or a Linear's input channels,
    also through global average pooling). Left alone, with the reason in `channel_groups`:
    channels that reach a residual add, a concatenation, a view splitting them (attention heads:
    see prune-heads), a grouped or depthwise convolution, or the graph output.

    Scores (per channel j of a group): `magnitude`: the L2 norm of everything j owns, producers'
    rows and consumers' columns. `wanda` (Wanda, Sun et al. 2023, aggregated per channel):
    c_j = sum over consumers and their outputs i of |W_ij| * ||X_j||_2, X_j the consumer's input
    channel j on the calibration inputs (summed over kernel taps for a convolution), plus
    p_j = sum over producers of |W_jk| * ||X_k||_2 over the producer's inputs k; the two are added
    as shares, c_j / sum(c) + `producer_weight` * p_j / sum(p), so neither's scale dominates.
    Without calibration or example inputs `wanda` falls back to `magnitude` (the proposal says so).

    Per-group sparsity: each group's cost of removing its k lowest-scored channels is their share
    of its summed score; a greedy allocation removes, step by step, the chunk (8 channels when the
    group has at least 32 and a multiple of 8, else 1) with the least cost per parameter removed,
    until `sparsity` of the prunable parameters are gone, no group losing more than
    min(0.95, 1.5 * sparsity) of its channels. One proposal per group, sensitivity = its cost /
    its share of the removed parameters; `retry` offers a left-out group at half its channels.

    `refit`: after removal, the consumers' kept columns are refitted on the calibration
    activations: a Linear's by least squares (W' = W H[:, keep] (H[keep, keep] + damping)^-1, H =
    X^T X, so the kept channels stand in for the removed ones as well as they linearly can); a
    consumer with a bias also gets the removed channels' mean contribution added to it (FLAP's bias
    compensation; convolutions get only that, ignoring padding at the borders).

    Cost: accuracy, by how much depends on the model; the measured loss is held to the budget.
    """
    name = "prune-channels"
    sparsity: float = 0.5
    score: str = "wanda"
    refit: bool = False
    producer_weight: float = 0.5

    def __post_init__(self):
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) \
                or not 0 < self.sparsity < 1:
            raise ValueError(f"pass 'prune-channels': option sparsity={self.sparsity!r} is not valid "
                             "(expected a number in (0, 1))")
        if self.score not in ("wanda", "magnitude"):
            raise ValueError(f"pass 'prune-channels': option score={self.score!r} is not valid "
                             "(expected one of wanda, magnitude)")
        if not 0 <= self.producer_weight:
            raise ValueError(f"pass 'prune-channels': option producer_weight={self.producer_weight!r} "
                             "is not valid (expected a number >= 0)")

    # -- the protocol -----------------------------------------------------------------------------
    def propose(self, gm: fx.GraphModule, ctx: PassContext) -> list[Proposal]:
        layers = self.layers(gm, ctx)
        allocation = allocate(layers, self.sparsity)
        return _sorted([self._proposal(layer, allocation[i]) for i, layer in enumerate(layers)
                        if allocation[i] > 0])

    def retry(self, gm: fx.GraphModule, ctx: PassContext, left_out: list[Proposal]) -> list[Proposal]:
        present = {n.name for n in gm.graph.nodes}
        again = []
        for p in left_out:
            if not isinstance(p, ChannelProposal) or not all(n in present for n in p.layer.group.producers):
                continue
            q = p.layer.quantum
            fewer = (p.removed // 2) // q * q
            if fewer > 0:
                again.append(self._proposal(p.layer, fewer))
        return _sorted(again)

    # -- layers and scores ------------------------------------------------------------------------
    def layers(self, gm: fx.GraphModule, ctx: PassContext) -> list["_Layer"]:
        groups = [g for g in channel_groups(gm) if g.prunable and g.size > 1]
        if not groups:
            return []
        batches = ctx.inputs_for_fitting() if self.score == "wanda" or self.refit else []
        watched = {}
        for g in groups:
            for name in g.consumers + (g.producers if self.score == "wanda" else []):
                node = node_named(gm, name)
                gram = name in g.consumers and self.refit
                watched[name] = (activation_index(node), gram or watched.get(name, (0, False))[1])
        stats = channel_stats(gm, watched, batches) if batches else {}
        layers = []
        for order, g in enumerate(groups):
            layer = _Layer(g, g.label(gm), order)
            layer.params_per_channel = _params_per_channel(gm, g)
            layer.quantum = 8 if g.size >= 32 and g.size % 8 == 0 else 1
            use_wanda = self.score == "wanda" and all(c in stats for c in g.consumers)
            layer.scores = (self._wanda(gm, g, stats) if use_wanda else _magnitude(gm, g))
            if self.score == "wanda" and not use_wanda:
                layer.note = ("magnitude scores: no calibration or example inputs" if not batches
                              else "magnitude scores: the layer did not run on the calibration inputs")
            if self.refit:
                layer.stats = {c: stats[c] for c in g.consumers if c in stats}
            layers.append(layer)
        return layers

    def _wanda(self, gm: fx.GraphModule, g: ChannelGroup, stats: dict) -> torch.Tensor:
        c = torch.zeros(g.size, dtype=torch.float64)
        for name in g.consumers:
            w = weight_matrix(node_named(gm, name)).double().abs()
            w = w.reshape(w.shape[0], w.shape[1], -1).sum(dim=(0, 2))   # (in,): sum_i |W_ij|
            c += w * stats[name].norms()
        total = c / c.sum().clamp_min(1e-30)
        if self.producer_weight > 0:
            p = torch.zeros(g.size, dtype=torch.float64)
            for name in g.producers:
                if name not in stats:
                    continue
                w = weight_matrix(node_named(gm, name)).double().abs()
                w = w.reshape(w.shape[0], w.shape[1], -1).sum(dim=2)    # (out, in)
                p += w @ stats[name].norms()
            if p.sum() > 0:
                total = total + self.producer_weight * p / p.sum()
        return total

    # -- proposals --------------------------------------------------------------------------------
    def _proposal(self, layer: "_Layer", removed: int) -> "ChannelProposal":
        order = torch.argsort(layer.scores, stable=True)
        keep = order[removed:].sort().values
        drop = order[:removed].sort().values
        cost = float(layer.scores[order[:removed]].sum() / layer.scores.sum().clamp_min(1e-30))
        maps, means = self._refit(layer, keep, drop) if self.refit else ({}, {})
        saved = removed * layer.params_per_channel
        what = (f"{layer.label}: {removed} of {layer.group.size} channels"
                + (f" ({layer.note})" if layer.note else ""))
        group = layer.group
        return ChannelProposal(
            what, cost / max(saved / max(layer.total_saved, 1), 1e-12),
            lambda g: prune_group(g, group, keep, maps, means),
            layer.weight_bytes, layer.weight_bytes - saved * layer.bytes_per_param,
            layer=layer, removed=removed, keep=keep)

    def _refit(self, layer: "_Layer", keep: torch.Tensor, drop: torch.Tensor):
        maps, means = {}, {}
        for name, s in layer.stats.items():
            if s.gram is not None and s.rows >= keep.numel():
                h = s.gram
                hk = h[keep][:, keep]
                damp = 0.01 * float(hk.diagonal().mean().clamp_min(1e-12))
                m = torch.linalg.solve(hk + damp * torch.eye(keep.numel(), dtype=h.dtype), h[keep])
                maps[name] = m.T.contiguous().float()    # (in, kept): W' = W @ maps
            mean = s.mean().float()
            means[name] = mean
        return maps, means


@dataclass
class ChannelProposal(Proposal):
    """A proposal that knows its group and how many channels it removes, for `retry`."""
    layer: "_Layer | None" = None
    removed: int = 0
    keep: torch.Tensor | None = None  # the channels kept (sorted indices)


@dataclass(eq=False)
class _Layer:
    group: ChannelGroup
    label: str
    order: int
    scores: torch.Tensor | None = None   # (C,) float64, higher: more important
    params_per_channel: int = 0
    quantum: int = 1
    note: str = ""
    stats: dict = field(default_factory=dict)  # consumer -> _ChannelStats (refit)
    total_saved: int = 0                       # params all proposals of this run remove
    bytes_per_param: int = 4

    @property
    def weight_bytes(self) -> int:
        return self.group.size * self.params_per_channel * self.bytes_per_param


def _sorted(proposals: list[ChannelProposal]) -> list[ChannelProposal]:
    return sorted(proposals, key=lambda p: (p.sensitivity, p.layer.order))


def allocate(layers: list[_Layer], sparsity: float) -> list[int]:
    """Channels to remove per layer (see PruneChannels): greedy, cheapest cost per parameter first."""
    removed = [0] * len(layers)
    total = sum(layer.group.size * layer.params_per_channel for layer in layers)
    target = sparsity * total
    cap = min(0.95, 1.5 * sparsity)
    ordered = [torch.sort(layer.scores).values / layer.scores.sum().clamp_min(1e-30) for layer in layers]
    done = 0.0
    while True:
        best = None
        for i, layer in enumerate(layers):
            q, k = layer.quantum, removed[i]
            if k + q > cap * layer.group.size or k + q >= layer.group.size:
                continue
            step = q * layer.params_per_channel
            if done + step > target + step / 2:
                continue
            cost = float(ordered[i][k:k + q].sum()) / step
            if best is None or cost < best[0]:
                best = (cost, i, step)
        if best is None:
            break
        _, i, step = best
        removed[i] += layers[i].quantum
        done += step
    saved = sum(r * layer.params_per_channel for r, layer in zip(removed, layers))
    for layer in layers:
        layer.total_saved = saved
    return removed


def _magnitude(gm: fx.GraphModule, g: ChannelGroup) -> torch.Tensor:
    s = torch.zeros(g.size, dtype=torch.float64)
    for name in g.producers:
        w = weight_matrix(node_named(gm, name)).double()
        s += w.reshape(w.shape[0], -1).pow(2).sum(1)
    for name in g.consumers:
        w = weight_matrix(node_named(gm, name)).double().movedim(1, 0)
        s += w.reshape(w.shape[0], -1).pow(2).sum(1)
    return s.sqrt()


def _params_per_channel(gm: fx.GraphModule, g: ChannelGroup) -> int:
    n = 0
    for name in g.producers:
        node = node_named(gm, name)
        w = weight_matrix(node)
        n += w[0].numel() + (1 if node.target is not aten.mm.default and _has_bias(node) else 0)
    for name in g.consumers:
        w = weight_matrix(node_named(gm, name))
        n += w[:, 0].numel()
    return n + len(g.sides)


def _has_bias(node: fx.Node) -> bool:
    if node.target is aten.addmm.default:
        return node.args[0] is not None
    if node.target is aten.convolution.default:
        return node.args[2] is not None
    return False


# -- statistics of the activations --------------------------------------------------------------
@dataclass
class _ChannelStats:
    """Per input channel of one product, over the calibration inputs: sum of squares and sum (for
    norms and means), and X^T X when asked (a Linear consumer under `refit`)."""
    sumsq: torch.Tensor
    total: torch.Tensor
    count: int = 0
    rows: int = 0
    gram: torch.Tensor | None = None

    def norms(self) -> torch.Tensor:
        return self.sumsq.sqrt()

    def mean(self) -> torch.Tensor:
        return self.total / max(self.count, 1)


def channel_stats(gm: fx.GraphModule, watched: dict[str, tuple[int, bool]], batches: list[list]) -> dict:
    """For each watched product (name -> (activation argument, want X^T X)), the statistics of its
    input channels over `batches` (the channel dimension: the last for a Linear, 1 for a
    convolution)."""
    stats: dict[str, _ChannelStats] = {}
    interpreter = _Watcher(gm, watched, stats)
    with torch.no_grad():
        for batch in batches:
            interpreter.run(*batch)
    return stats


class _Watcher(fx.Interpreter):
    def __init__(self, gm, watched, stats):
        super().__init__(gm)
        self.watched, self.stats = watched, stats

    def run_node(self, n: fx.Node):
        if n.name in self.watched:
            index, want_gram = self.watched[n.name]
            args, _ = self.fetch_args_kwargs_from_env(n)
            x = args[index]
            if isinstance(x, torch.Tensor):
                dim = 1 if n.target is aten.convolution.default else x.dim() - 1
                rows = x.detach().movedim(dim, -1).reshape(-1, x.shape[dim]).to(torch.float64).cpu()
                s = self.stats.get(n.name)
                if s is None:
                    s = self.stats[n.name] = _ChannelStats(torch.zeros(rows.shape[1], dtype=torch.float64),
                                                           torch.zeros(rows.shape[1], dtype=torch.float64))
                s.sumsq += rows.pow(2).sum(0)
                s.total += rows.sum(0)
                s.count += rows.shape[0]
                s.rows += rows.shape[0]
                if want_gram and n.target is not aten.convolution.default:
                    s.gram = rows.T @ rows if s.gram is None else s.gram + rows.T @ rows
        return super().run_node(n)
