"""Attention heads: which rows and columns of a graph's projections belong to one head, and how to
remove whole heads.

A *head group* is an attention layer as the graph computes it: the products with a frozen weight
whose output channels are split into heads (the q, k and v projections, or one fused qkv
projection), every op between them that keeps the heads apart, and the products that read the
heads back as input channels (the output projection). Removing head h removes, for each
producer, the rows of h (all of its parts: q, k and v of a fused projection) and their bias
entries, for each consumer the columns of h, and turns every size the head count is part of (a
view's `[b, t, 4, 24]`, an expand's `4`, a batch-and-heads `b * 4`, a split's `[32, 32, 32]`) into
the new count.

How the heads are laid out in the producer's rows is guessed first (the view after it that
splits its last dimension into `[.., heads, head_dim]`, or `[.., 3, heads, head_dim]` for a fused
projection); whether removing them is exact is then proved by one forward walk over the graph,
tracking for each value the dimension that holds the heads as (outer, heads, inner) factors
(index = (o * heads + h) * inner + i):

- views and reshapes split, merge or keep that dimension (`[b, t, 96] -> [b, t, 4, 24]`,
  `[b, 4, t, 24] -> [4b, t, 24]`, back); permutes move it; expands keep it; slices and splits of
  whole `heads * inner` blocks (a fused projection's q, k, v) keep it with a smaller outer factor;
  slices, selects, concatenations, softmaxes and reductions over other dimensions keep it;
- pointwise ops keep it when every operand holding heads holds them alike (q times k's rotary
  table, the causal mask, a scale) and other operands broadcast over it;
- `bmm` keeps it when both operands hold heads in the batch dimension alike (q @ k^T, p @ v);
  scaled dot product attention when q, k and v hold them in dimension 1;
- a Linear reading the heads as its input channels (heads * head_dim, outer factor 1) ends the
  walk: it is a consumer.

Anything else that reads the heads makes the layer not prunable, with the reason recorded:
shared key/value heads (grouped-query attention: k and v hold fewer heads than q), a per-head
constant (ALiBi slopes, a learned per-head scale), a size computed from the head count that is
not `n * literal`, the head count read with `sym_size`, the heads reaching the graph output or a
residual add, a weight read twice, ops not listed here. Rotary embeddings are fine: their tables
broadcast over the heads.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import sympy
import torch
import torch.fx as fx

from fastc.ir.constants import constant_value
from fastc.ir.printer import node_scope
from fastc.ir.types import node_type

from .channel_groups import (LINEAR_PRODUCTS, node_named, replace_constant, same_size, take_channels, activation_index,
                             bias_index, refresh_types, weight_of)

aten = torch.ops.aten

_COPIES = {aten.clone.default, aten.alias.default, aten._to_copy.default, aten.contiguous.default,
           aten.full_like.default, aten.zeros_like.default, aten.ones_like.default,
           aten.empty_like.default}
_VIEWS = {aten.view.default, aten._unsafe_view.default, aten.reshape.default}
_SHAPE_ONLY = {aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default}
_SOFTMAX = {aten._softmax.default, aten._log_softmax.default, aten._safe_softmax.default}
_REDUCTIONS = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default, aten.amin.default,
               aten.any.dim, aten.any.dims, aten.logsumexp.default}
_SDPA = {aten._scaled_dot_product_flash_attention_for_cpu.default,
         aten._scaled_dot_product_flash_attention.default,
         aten._scaled_dot_product_efficient_attention.default,
         aten.scaled_dot_product_attention.default}


@dataclass
class Scale:
    """A size the head count is a factor of: `node.args[arg]`, or its entry `item` (a list)."""
    node: str
    arg: int
    item: int | None = None


@dataclass
class HeadGroup:
    heads: int
    producers: list[tuple[str, int, int]] = field(default_factory=list)  # (name, outer, head_dim)
    consumers: list[tuple[str, int]] = field(default_factory=list)       # (name, head_dim)
    scales: list[Scale] = field(default_factory=list)
    reason: str | None = None

    @property
    def prunable(self) -> bool:
        return self.reason is None and bool(self.producers) and bool(self.consumers) and self.heads > 1

    def label(self, gm: fx.GraphModule) -> str:
        node = node_named(gm, self.consumers[0][0] if self.consumers else self.producers[0][0])
        scope = node_scope(node)
        names = "+".join(p for p, _, _ in self.producers) + " -> " + "+".join(c for c, _ in self.consumers)
        return f"{scope[0]} ({names})" if scope else names

    def producer_rows(self, name: str, keep: list[int]) -> torch.Tensor:
        """The rows of producer `name` that heads `keep` own, in order."""
        outer, dim = next((o, d) for p, o, d in self.producers if p == name)
        return torch.tensor([(o * self.heads + h) * dim + i for o in range(outer) for h in keep
                             for i in range(dim)], dtype=torch.long)

    def consumer_columns(self, name: str, keep: list[int]) -> torch.Tensor:
        dim = next(d for c, d in self.consumers if c == name)
        return torch.tensor([h * dim + i for h in keep for i in range(dim)], dtype=torch.long)


# -- the analysis ------------------------------------------------------------------------------
def head_groups(gm: fx.GraphModule) -> list[HeadGroup]:
    """Every attention layer of the graph the walk found (see the module docstring), prunable or
    not, in graph order."""
    return _Walk(gm).run()


@dataclass(frozen=True)
class _Track:
    gid: int
    dim: int
    outer: object  # int or sympy expression
    inner: object


class _Walk:
    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.groups: list[HeadGroup] = []
        self.parent: list[int] = []
        self.state: dict[fx.Node, object] = {}  # node -> _Track, or a tuple of _Track | None

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            ga, gb = self.groups[a], self.groups[b]
            if ga.heads != gb.heads:
                ga.reason = ga.reason or (f"{ga.heads} and {gb.heads} heads meet (shared key/value "
                                          "heads: grouped-query attention)")
            ga.producers += gb.producers
            ga.consumers += gb.consumers
            ga.scales += gb.scales
            ga.reason = ga.reason or gb.reason
            self.parent[b] = a
        return a

    def group(self, track: _Track) -> HeadGroup:
        return self.groups[self.find(track.gid)]

    def fail(self, node: fx.Node, why: str) -> None:
        s = self.state.get(node)
        for t in (s if isinstance(s, tuple) else (s,)):
            if t is not None:
                g = self.group(t)
                g.reason = g.reason or why

    def run(self) -> list[HeadGroup]:
        for node in self.gm.graph.nodes:
            if node.op == "output":
                for a in node.all_input_nodes:
                    if a in self.state:
                        self.fail(a, f"the heads reach the graph output ({a.name})")
                continue
            if node.op != "call_function":
                continue
            if any(a in self.state for a in node.all_input_nodes):
                self.use(node)
            if node.target in LINEAR_PRODUCTS and weight_of(node) is not None:
                split = _head_split(node)
                if split is not None:
                    heads, dim, outer = split
                    gid = len(self.groups)
                    self.groups.append(HeadGroup(heads, producers=[(node.name, outer, dim)]))
                    self.parent.append(gid)
                    self.state[node] = _Track(gid, _rank(node) - 1, outer, dim)
        for g in self.groups:
            for name in [p for p, _, _ in g.producers] + [c for c, _ in g.consumers]:
                node = node_named(self.gm, name)
                ref = weight_of(node)
                if len(ref.constant.users) != 1 or (ref.reader is not node and len(ref.reader.users) != 1):
                    g.reason = g.reason or f"the weight of {name} is read elsewhere too"
        roots = {self.find(i) for i in range(len(self.groups))}
        return [self.groups[i] for i in sorted(roots)]

    # -- one op reading values that hold heads --
    def use(self, node: fx.Node) -> None:
        t = node.target
        tracked = [a for a in node.all_input_nodes if a in self.state]
        tuples = [a for a in tracked if isinstance(self.state[a], tuple)]
        if t is operator.getitem:
            src, index = node.args
            items = self.state[src]
            item = items[index] if isinstance(items, tuple) and index < len(items) else None
            if item is not None:
                self.state[node] = item
            elif node.users:
                self.fail(src, f"{node.name} reads part {index} of {src.name}")
            return
        if tuples:
            self.fail(tuples[0], f"{node.name} ({_op_name(t)}) reads a tuple holding heads")
            return
        ref = weight_of(node)
        if ref is not None:
            x = node.args[activation_index(node)]
            for a in tracked:
                if a is not x:
                    self.fail(a, f"{node.name} reads the heads as a weight or bias")
            if x in self.state:
                s = self.state[x]
                if t in LINEAR_PRODUCTS and s.dim == _rank(x) - 1 and s.outer == 1:
                    self.group(s).consumers.append((node.name, int(s.inner)))
                else:
                    self.fail(x, f"{node.name} does not contract over whole heads")
            return
        if t is aten.sym_size.int:
            src, d = node.args
            if d % _rank(src) == self.state[src].dim:
                self.fail(src, f"{node.name} reads the head count")
            return
        if t is aten.bmm.default:
            a, b = node.args
            if a in self.state and b in self.state and self.state[a].dim == 0 == self.state[b].dim \
                    and same_size(self.state[a].outer, self.state[b].outer) \
                    and same_size(self.state[a].inner, self.state[b].inner):
                gid = self.union(self.state[a].gid, self.state[b].gid)
                self.state[node] = _Track(gid, 0, self.state[a].outer, self.state[a].inner)
            else:
                why = (f"{node.name} (bmm) pairs heads laid out differently (shared key/value heads: "
                       "grouped-query attention)" if len(tracked) == 2 and self.state[a].dim == 0 == self.state[b].dim
                       else f"{node.name} (bmm) does not keep the heads in its batch")
                for x in tracked:
                    self.fail(x, why)
            return
        if t in _SDPA:
            self.sdpa(node, tracked)
            return
        if t is aten.cat.default:
            self.cat(node, tracked)
            return
        if t in (aten.split_with_sizes.default, aten.split.Tensor):
            self.split(node, tracked)
            return
        if len(tracked) == 1 and node.args and node.args[0] is tracked[0]:
            x = tracked[0]
            s = self.state[x]
            out = None
            if t in _COPIES:
                out = s
            elif t is aten.permute.default:
                out = _Track(s.gid, [p % _rank(x) for p in node.args[1]].index(s.dim), s.outer, s.inner)
            elif t in _SOFTMAX:
                out = s if node.args[1] % _rank(x) != s.dim else None
            elif t in _REDUCTIONS:
                out = _reduced(node, x, s)
            elif t in _VIEWS or t in _SHAPE_ONLY:
                out = self.reshaped(node, x, s)
                if out is None:
                    return
            elif t is aten.expand.default:
                out = self.expanded(node, x, s)
                if out is None:
                    return
            elif t is aten.slice.Tensor:
                out = self.sliced(node, x, s)
                if out is None:
                    return
            elif t is aten.select.int:
                d = node.args[1] % _rank(x)
                if d != s.dim:
                    out = _Track(s.gid, s.dim - (d < s.dim), s.outer, s.inner)
            elif _is_pointwise(node):
                self.pointwise(node, tracked)
                return
            if out is None:
                self.fail(x, self.group(s).reason or f"{node.name} ({_op_name(t)}) mixes the heads")
                return
            self.state[node] = out
            return
        if _is_pointwise(node):
            self.pointwise(node, tracked)
            return
        for a in tracked:
            self.fail(a, f"{node.name} ({_op_name(t)}) reads the heads")

    def pointwise(self, node: fx.Node, tracked: list[fx.Node]) -> None:
        rank = _rank(node)
        first = self.state[tracked[0]]
        out = first.dim + rank - _rank(tracked[0])
        gid = first.gid
        for a in tracked[1:]:
            s = self.state[a]
            if s.dim + rank - _rank(a) != out or not same_size(s.outer, first.outer) or not same_size(s.inner, first.inner):
                self.fail(a, f"{node.name} ({_op_name(node.target)}) combines heads laid out differently")
                self.fail(tracked[0], f"{node.name} ({_op_name(node.target)}) combines heads laid out differently")
                return
            gid = self.union(gid, s.gid)
        for a in node.all_input_nodes:
            if a in self.state:
                continue
            shape = getattr(node_type(a), "shape", None)
            if shape is None:
                continue
            d = out - (rank - len(shape))
            if d >= 0 and not same_size(shape[d], 1):
                self.fail(tracked[0], f"{node.name} ({_op_name(node.target)}) combines the heads with "
                                      f"{a.name}, which has a size for each head")
                return
        self.state[node] = _Track(gid, out, first.outer, first.inner)

    def sdpa(self, node: fx.Node, tracked: list[fx.Node]) -> None:
        q, k, v = node.args[:3]
        ss = [self.state.get(a) for a in (q, k, v)]
        ok = all(s is not None and s.dim == 1 and s.outer == 1 and s.inner == 1 for s in ss)
        if ok:
            gid = self.union(self.union(ss[0].gid, ss[1].gid), ss[2].gid)
            for a in node.all_input_nodes:
                if a in (q, k, v):
                    continue
                shape = getattr(node_type(a), "shape", ())
                if a in self.state or (len(shape) == 4 and not same_size(shape[1], 1)):
                    ok = False
        if not ok:
            for a in tracked:
                self.fail(a, f"{node.name} (attention) does not keep the heads in dimension 1")
            return
        out = _Track(gid, 1, 1, 1)
        # The attention output; other results (log-sum-exp, ...) may not be read.
        self.state[node] = out if node.target is aten.scaled_dot_product_attention.default \
            else (out,) + (None,) * 8

    def cat(self, node: fx.Node, tracked: list[fx.Node]) -> None:
        parts = node.args[0]
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        states = [self.state.get(p) for p in parts]
        first = states[0]
        if first is None or dim % _rank(node) == first.dim or any(
                s is None or s.dim != first.dim or not same_size(s.outer, first.outer) or not same_size(s.inner, first.inner)
                for s in states):
            for a in tracked:
                self.fail(a, f"concatenation {node.name} mixes the heads")
            return
        gid = first.gid
        for s in states[1:]:
            gid = self.union(gid, s.gid)
        self.state[node] = _Track(gid, first.dim, first.outer, first.inner)

    def split(self, node: fx.Node, tracked: list[fx.Node]) -> None:
        x = node.args[0]
        s = self.state.get(x)
        if s is None or len(tracked) != 1:
            self.fail(tracked[0], f"{node.name} splits the heads")
            return
        dim = (node.args[2] if len(node.args) > 2 else node.kwargs.get("dim", 0)) % _rank(x)
        size = _shape(x)[dim]
        if node.target is aten.split.Tensor:
            step = node.args[1]
            sizes = [min(step, size - i) for i in range(0, size, step)] if isinstance(size, int) else None
        else:
            sizes = list(node.args[1])
        if dim != s.dim:
            self.state[node] = tuple(s for _ in node_type(node).items)
            return
        block = self.group(s).heads * s.inner
        if sizes is None or not isinstance(block, int) or any(n % block for n in sizes):
            self.fail(x, f"{node.name} splits the heads' dimension inside a head")
            return
        g = self.group(s)
        if node.target is aten.split.Tensor:
            g.scales.append(Scale(node.name, 1))
        else:
            g.scales += [Scale(node.name, 1, i) for i in range(len(sizes))]
        self.state[node] = tuple(_Track(s.gid, s.dim, n // block, s.inner) for n in sizes)

    def sliced(self, node: fx.Node, x: fx.Node, s: _Track) -> _Track | None:
        dim = node.args[1] % _rank(x) if len(node.args) > 1 else 0
        if dim != s.dim:
            return s
        start = node.args[2] if len(node.args) > 2 else 0
        end = node.args[3] if len(node.args) > 3 else None
        step = node.args[4] if len(node.args) > 4 else 1
        size = _shape(x)[dim]
        block = self.group(s).heads * s.inner
        if not all(isinstance(v, int) for v in (start, size, block)) or step != 1 \
                or (end is not None and not isinstance(end, int)):
            return None
        end = size if end is None or end >= size else end
        if start < 0 or end < 0 or start % block or end % block or end <= start:
            return None
        g = self.group(s)
        g.scales.append(Scale(node.name, 2))
        if len(node.args) > 3 and node.args[3] < size:
            g.scales.append(Scale(node.name, 3))
        return _Track(s.gid, s.dim, (end - start) // block, s.inner)

    def expanded(self, node: fx.Node, x: fx.Node, s: _Track) -> _Track | None:
        sizes = list(node.args[1])
        d = s.dim + len(sizes) - _rank(x)
        entry = sizes[d]
        if entry != -1:
            if not self.scalable(node, x, 1, d, entry):
                return None
        return _Track(s.gid, d, s.outer, s.inner)

    def scalable(self, node: fx.Node, x: fx.Node, arg: int, item: int | None, entry) -> bool:
        """Records `node.args[arg][item]` (a size holding the head count) to be rewritten, or the
        reason it cannot be."""
        g = self.group(self.state[x])
        if isinstance(entry, int) and entry % g.heads == 0:
            g.scales.append(Scale(node.name, arg, item))
            return True
        if isinstance(entry, fx.Node) and _literal_factor(entry) is not None \
                and _literal_factor(entry)[1] % g.heads == 0:
            g.scales.append(Scale(node.name, arg, item))
            return True
        self.fail(x, f"{node.name} ({_op_name(node.target)}) computes a size holding the head count "
                     f"({entry})")
        return False

    def reshaped(self, node: fx.Node, x: fx.Node, s: _Track) -> _Track | None:
        """Where the heads land in a reshape (see the module docstring), the view's size entry
        recorded to be rewritten; else None, with the reason recorded."""
        before, after = _shape(x), _shape(node)
        heads = self.group(s).heads
        pb, pa = _prefixes(before), _prefixes(after)
        i0 = max(i for i in range(s.dim + 1) if any(same_size(pb[i], p) for p in pa))
        j0 = max(j for j in range(len(pa)) if same_size(pa[j], pb[i0]))
        ends = [(i, j) for i in range(s.dim + 1, len(pb)) for j in range(j0 + 1, len(pa)) if same_size(pb[i], pa[j])]
        if not ends:
            self.fail(x, f"{node.name} ({_op_name(node.target)}) moves the heads across dimensions")
            return None
        i1, j1 = min(ends)
        outer = _prod(before[i0:s.dim]) * s.outer
        inner = s.inner * _prod(before[s.dim + 1:i1])
        for j in range(j0, j1):
            o = _divide(outer, _prod(after[j0:j]))
            i = _divide(inner, _prod(after[j + 1:j1]))
            if o is None or i is None or not same_size(after[j], o * heads * i):
                continue
            if node.target in _VIEWS:
                entry = node.args[1][j]
                if entry != -1 and not self.scalable(node, x, 1, j, entry):
                    return None
            return _Track(s.gid, j, o, i)
        self.fail(x, f"{node.name} ({_op_name(node.target)}) splits a head")
        return None


def _head_split(node: fx.Node) -> tuple[int, int, int] | None:
    """(heads, head_dim, parts) of a projection whose output channels a later view splits into
    `[.., heads, head_dim]` (parts: C / (heads * head_dim), 3 for a fused qkv projection), found
    through views keeping the channels last, slices and splits of them; None when there is none
    or the views disagree."""
    channels = _shape(node)[-1]
    found = set()
    todo, seen = [node], set()
    while todo and len(seen) < 64:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        for u in n.users:
            if u.op != "call_function":
                continue
            t = u.target
            if t is operator.getitem or t in _COPIES:
                todo.append(u)
                continue
            if t in (aten.split_with_sizes.default, aten.split.Tensor) or t is aten.slice.Tensor:
                dim = u.args[1 if t is aten.slice.Tensor else 2] if len(u.args) > (1 if t is aten.slice.Tensor else 2) else 0
                if isinstance(dim, int) and dim % _rank(n) == _rank(n) - 1:
                    todo.append(u)
                continue
            if t not in _VIEWS:
                continue
            before, after = _shape(n), _shape(u)
            lead = _prod(before[:-1])
            pa = _prefixes(after)
            ks = [k for k in range(len(after)) if same_size(pa[k], lead)]
            if not ks:
                continue
            k = max(ks)
            tail = after[k:]
            if len(tail) == 1:
                todo.append(u)
            elif len(tail) >= 2 and all(isinstance(v, int) for v in tail[-2:]):
                found.add((tail[-2], tail[-1]))
    if len(found) != 1:
        return None
    ((heads, dim),) = found
    if not isinstance(channels, int) or channels % (heads * dim) or heads < 2:
        return None
    return heads, dim, channels // (heads * dim)


def _reduced(node: fx.Node, x: fx.Node, s: _Track) -> _Track | None:
    rank = _rank(x)
    dims = node.args[1] if len(node.args) > 1 else None
    if dims is None:
        return None
    dims = [d % rank for d in ([dims] if isinstance(dims, int) else dims)]
    if s.dim in dims:
        return None
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return s if keep else _Track(s.gid, s.dim - sum(d < s.dim for d in dims), s.outer, s.inner)


def _literal_factor(entry: fx.Node):
    """(other operand, literal) of a size computed as `n * literal` (or `literal * n`), else None."""
    if entry.op == "call_function" and entry.target is operator.mul and len(entry.args) == 2:
        a, b = entry.args
        if isinstance(b, int) and isinstance(a, fx.Node):
            return a, b
        if isinstance(a, int) and isinstance(b, fx.Node):
            return b, a
    return None


def _divide(a, b):
    """a / b when it divides exactly (ints, or sympy expressions whose quotient has no
    denominator), else None."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b and a % b == 0 else None
    q = sympy.cancel(sympy.sympify(a) / sympy.sympify(b))
    num, den = sympy.fraction(q)
    if den != 1:
        return None
    return int(q) if q.is_Integer else q


def _prefixes(shape) -> list:
    out = [1]
    for d in shape:
        out.append(out[-1] * d)
    return out


def _prod(dims):
    out = 1
    for d in dims:
        out = out * d
    return out


def _shape(node: fx.Node) -> tuple:
    return tuple(node_type(node).shape)


def _rank(node: fx.Node) -> int:
    return len(_shape(node))


def _is_pointwise(node: fx.Node) -> bool:
    return isinstance(node.target, torch._ops.OpOverload) and torch.Tag.pointwise in node.target.tags


def _op_name(target) -> str:
    return getattr(target, "__name__", str(target))


# -- the rewrite -------------------------------------------------------------------------------
def prune_heads(gm: fx.GraphModule, group: HeadGroup, keep: list[int]) -> None:
    """Keeps heads `keep` (sorted) of `group` in `gm` (found by name): new, smaller constants,
    the head count rewritten in every size holding it, node types refreshed."""
    keep = sorted(keep)
    touched: list[fx.Node] = []
    for name, _, _ in group.producers:
        node = node_named(gm, name)
        ref = weight_of(node)
        rows = group.producer_rows(name, keep)
        touched.append(replace_constant(gm, ref.reader, ref.constant, take_channels(constant_value(ref.constant), ref.out_dim, rows)))
        b = bias_index(node)
        if b is not None and node.args[b] is not None:
            bias = node.args[b]
            touched.append(replace_constant(gm, node, bias, take_channels(constant_value(bias), 0, rows)))
    for name, _ in group.consumers:
        node = node_named(gm, name)
        ref = weight_of(node)
        cols = group.consumer_columns(name, keep)
        touched.append(replace_constant(gm, ref.reader, ref.constant, take_channels(constant_value(ref.constant), ref.in_dim, cols)))
    old_sizes = []
    for scale in group.scales:
        node = node_named(gm, scale.node)
        args = list(node.args)
        value = args[scale.arg] if scale.item is None else args[scale.arg][scale.item]
        new = _scaled(gm, node, value, len(keep), group.heads)
        if scale.item is None:
            args[scale.arg] = new
        else:
            entries = list(args[scale.arg])
            entries[scale.item] = new
            args[scale.arg] = entries
        node.args = tuple(args)
        touched.append(node)
        if isinstance(value, fx.Node):
            old_sizes.append(value)
    for value in old_sizes:
        if not value.users and value in gm.graph.nodes:
            gm.graph.erase_node(value)
    refresh_types(gm, set(touched))


def _scaled(gm: fx.GraphModule, user: fx.Node, value, kept: int, heads: int):
    if isinstance(value, int):
        return value * kept // heads
    other, literal = _literal_factor(value)
    with gm.graph.inserting_before(user):
        new = gm.graph.call_function(operator.mul, (other, literal * kept // heads))
    if "val" in other.meta:
        new.meta["val"] = other.meta["val"] * (literal * kept // heads)
    if "type" in value.meta:
        new.meta["type"] = value.meta["type"]
    return new
