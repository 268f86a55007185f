"""Channel groups: the channels of a graph that can be removed together, and how to remove them.

A group is a set of output channels of one or more products with a frozen weight (its
*producers*: a Linear's `mm`/`addmm`, a convolution) that flow, through ops that keep each
channel apart, into the input channels of other such products (its *consumers*), and nowhere
else. Removing channel j of a group removes row j of every producer's weight (and bias), entry j
of every constant the channels meet on the way (a BatchNorm's statistics, a norm weight), column j
of every consumer's weight, and turns each size literal C in the views between them into C - k.

The analysis is one forward walk over the graph, tracking which dimension of each value holds a
group's channels. Ops a channel passes through on its own:

- pointwise ops (relu, gelu, sigmoid, mul, add, ...): two tracked operands join their groups
  (SwiGLU's gate and up projections: `gate * silu(up)` -> one group); a constant operand that has
  the channel dimension is sliced along; an operand without it (a scalar, an [N, 1] norm factor)
  is fine;
- views and reshapes that keep the channel dimension whole (`[N*T, C] -> [N, T, C]`,
  `[N, C, 1, 1] -> [N, C]`), permutes, clones, squeezes; reductions (mean, sum) over other
  dimensions (global average pooling);
- inference BatchNorm (`_native_batch_norm_legit_no_training`) over the channel dimension.

A group is *not* prunable, with the reason recorded, when its channels meet anything else: an
add with a non-constant full-size operand (a residual connection), a concatenation, a view that
splits or merges the channel dimension (attention heads, `flatten` into a linear), a grouped or
depthwise convolution, a weight read by two products, the graph's output, or any other op.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import sympy
import torch
import torch.fx as fx

from fastc.ir.constants import add_constant, constant_value, is_constant
from fastc.ir.printer import node_scope
from fastc.ir.types import node_type, type_of_value

aten = torch.ops.aten

LINEAR_PRODUCTS = (aten.mm.default, aten.addmm.default)
_CONV = aten.convolution.default
_BATCH_NORM = aten._native_batch_norm_legit_no_training.default
_COPIES = {aten.clone.default, aten.alias.default, aten._to_copy.default, aten.contiguous.default}
_RESHAPES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default,
             aten.unsqueeze.default, aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default}
_REDUCTIONS = {aten.mean.dim, aten.sum.dim_IntList, aten.amax.default}


@dataclass
class Side:
    """A constant sliced along with the channels: argument `arg` of node `node`, dimension `dim`."""
    node: str
    arg: int
    dim: int


@dataclass
class ChannelGroup:
    size: int                                          # C: channels in the group
    producers: list[str] = field(default_factory=list)  # products whose output channels these are
    consumers: list[str] = field(default_factory=list)  # products reading them as input channels
    sides: list[Side] = field(default_factory=list)
    views: list[tuple[str, int]] = field(default_factory=list)  # (view node, shape entry holding C)
    reason: str | None = None                           # why it cannot be pruned (None: it can)

    @property
    def prunable(self) -> bool:
        return self.reason is None and bool(self.producers) and bool(self.consumers)

    def label(self, gm: fx.GraphModule) -> str:
        node = next(n for n in gm.graph.nodes if n.name == self.producers[0])
        scope = node_scope(node)
        names = "+".join(self.producers) + " -> " + "+".join(self.consumers)
        return f"{scope[0]} ({names})" if scope else names


# -- weights of products ---------------------------------------------------------------------------
@dataclass
class WeightRef:
    """Where a product's weight is: the constant node, the chain of views from it to the product,
    and which dimension of the constant holds the product's output and input channels."""
    constant: fx.Node
    reader: fx.Node  # the node reading the constant (the first view, or the product itself)
    out_dim: int
    in_dim: int


def weight_of(node: fx.Node) -> WeightRef | None:
    """The frozen weight of a matched product (mm/addmm with a constant (in, out) operand, read
    directly or through `permute(W, [1, 0])` / `t`; a dense convolution with a constant weight),
    else None."""
    if node.op != "call_function":
        return None
    if node.target in LINEAR_PRODUCTS:
        if node.target is aten.addmm.default:
            if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
                return None
            bias = node.args[0]
            if bias is not None and not (is_constant(bias) and constant_value(bias).dim() == 1):
                return None
        operand = node.args[-1]
        if is_constant(operand):
            ref = WeightRef(operand, node, 1, 0)
        elif (isinstance(operand, fx.Node) and operand.op == "call_function" and is_constant(operand.args[0])
              and (operand.target is aten.t.default
                   or (operand.target is aten.permute.default and list(operand.args[1]) == [1, 0]))):
            ref = WeightRef(operand.args[0], operand, 0, 1)
        else:
            return None
    elif node.target is _CONV:
        w, bias = node.args[1], node.args[2]
        transposed, groups = node.args[6], node.args[8]
        if transposed or groups != 1 or not is_constant(w):
            return None
        if bias is not None and not is_constant(bias):
            return None
        ref = WeightRef(w, node, 0, 1)
    else:
        return None
    value = constant_value(ref.constant)
    if not isinstance(value, torch.Tensor) or not value.is_floating_point():
        return None
    return ref


def activation_index(node: fx.Node) -> int:
    """Which argument of a matched product is its input activation."""
    return 1 if node.target is aten.addmm.default else 0


def bias_index(node: fx.Node) -> int | None:
    if node.target is aten.addmm.default:
        return 0
    if node.target is _CONV:
        return 2
    return None


def weight_matrix(node: fx.Node) -> torch.Tensor:
    """The product's weight as (out, in, *kernel), whatever its layout in the graph."""
    ref = weight_of(node)
    value = constant_value(ref.constant)
    return value.t() if ref.out_dim == 1 else value


# -- the analysis ------------------------------------------------------------------------------
def channel_groups(gm: fx.GraphModule) -> list[ChannelGroup]:
    """Every group of the graph (see the module docstring), prunable or not, in graph order."""
    return _Walk(gm).run()


class _Walk:
    def __init__(self, gm: fx.GraphModule):
        self.gm = gm
        self.groups: list[ChannelGroup] = []
        self.parent: list[int] = []
        self.state: dict[fx.Node, tuple[int, int | str]] = {}  # node -> (group, channel dim | "tuple")

    # union-find over group ids
    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> int:
        a, b = self.find(a), self.find(b)
        if a != b:
            ga, gb = self.groups[a], self.groups[b]
            if ga.size != gb.size:
                ga.reason = ga.reason or f"channel counts {ga.size} and {gb.size} meet"
            ga.producers += gb.producers
            ga.consumers += gb.consumers
            ga.sides += gb.sides
            ga.views += gb.views
            ga.reason = ga.reason or gb.reason
            self.parent[b] = a
        return a

    def group(self, node: fx.Node) -> ChannelGroup:
        return self.groups[self.find(self.state[node][0])]

    def fail(self, node: fx.Node, why: str) -> None:
        g = self.group(node)
        g.reason = g.reason or why

    def run(self) -> list[ChannelGroup]:
        weight_readers: dict[fx.Node, int] = {}
        for node in self.gm.graph.nodes:
            if node.op == "get_attr":
                weight_readers[node] = len(node.users)
            if node.op == "output":
                for a in node.all_input_nodes:
                    if a in self.state:
                        self.fail(a, f"its channels reach the graph output ({a.name})")
                continue
            if node.op != "call_function":
                continue
            if any(a in self.state for a in node.all_input_nodes):
                self.use(node)
            ref = weight_of(node)
            if ref is not None:
                gid = len(self.groups)
                value = constant_value(ref.constant)
                self.groups.append(ChannelGroup(int(value.shape[ref.out_dim]), producers=[node.name]))
                self.parent.append(gid)
                self.state[node] = (gid, _rank(node) - 1 if node.target in LINEAR_PRODUCTS else 1)
        # A weight read anywhere else than by its one product cannot shrink.
        for g in self.groups:
            for name in g.producers + g.consumers:
                node = node_named(self.gm, name)
                ref = weight_of(node)
                if len(ref.constant.users) != 1 or (ref.reader is not node and len(ref.reader.users) != 1):
                    g.reason = g.reason or f"the weight of {name} is read elsewhere too"
        roots = {self.find(i) for i in range(len(self.groups))}
        return [self.groups[i] for i in sorted(roots)]

    # -- one op reading tracked values --
    def use(self, node: fx.Node) -> None:
        tracked = [a for a in node.all_input_nodes if a in self.state]
        t = node.target
        ref = weight_of(node)
        if ref is not None:
            x = node.args[activation_index(node)]
            for a in tracked:
                if a is not x:
                    self.fail(a, f"{node.name} reads the channels as a weight or bias")
            if x in self.state:
                dim = self.state[x][1]
                want = _rank(x) - 1 if t in LINEAR_PRODUCTS else 1
                if dim != want:
                    self.fail(x, f"{node.name} does not contract over the channels")
                else:
                    self.group(x).consumers.append(node.name)
            return
        if t is _CONV:
            groups = node.args[8]
            why = (f"grouped convolution {node.name} (groups={groups})" if groups != 1
                   else f"{node.name} is not a dense convolution with a constant weight")
            for a in tracked:
                self.fail(a, why)
            return
        if t is operator.getitem:
            src, index = node.args
            gid, dim = self.state[src]
            if dim == "tuple" and index == 0:
                self.state[node] = (gid, 1)
            elif node.users:
                self.fail(src, f"{node.name} reads part {index} of {src.name}")
            return
        if t is _BATCH_NORM:
            x = node.args[0]
            if x not in self.state or self.state[x][1] != 1 or len(tracked) != 1:
                self.fail(tracked[0], f"batch norm {node.name} is not over the channels")
                return
            for i in range(1, 5):
                c = node.args[i]
                if c is None:
                    continue
                if not is_constant(c):
                    self.fail(x, f"batch norm {node.name} has non-constant statistics")
                    return
                self.group(x).sides.append(Side(node.name, i, 0))
            self.state[node] = (self.state[x][0], "tuple")
            return
        if t is aten.sym_size.int:
            src, d = node.args
            if d % _rank(src) == self.state[src][1]:
                self.fail(src, f"{node.name} reads the channel count")
            return
        if len(tracked) == 1 and node.args and node.args[0] is tracked[0]:
            x = tracked[0]
            gid, dim = self.state[x]
            if dim == "tuple":
                self.fail(x, f"{node.name} ({_op_name(t)}) reads the batch norm's results")
                return
            out = None
            if t in _COPIES:
                out = dim
            elif t is aten.permute.default:
                out = [p % _rank(x) for p in node.args[1]].index(dim)
            elif t in _REDUCTIONS:
                out = _reduced_dim(node, x, dim)
            elif t in _RESHAPES:
                out = self.reshaped_dim(node, x, dim)
            elif _is_pointwise(node):
                out = self.pointwise(node, tracked)
                if out is None:
                    return
            if out is None:
                self.fail(x, self.group(x).reason or f"{node.name} ({_op_name(t)}) mixes the channels")
                return
            self.state[node] = (gid, out)
            return
        if _is_pointwise(node):
            out = self.pointwise(node, tracked)
            if out is not None:
                self.state[node] = (self.find(self.state[tracked[0]][0]), out)
            return
        why = (f"concatenation {node.name}" if t is aten.cat.default
               else f"{node.name} ({_op_name(t)}) reads the channels")
        for a in tracked:
            self.fail(a, why)

    def pointwise(self, node: fx.Node, tracked: list[fx.Node]) -> int | None:
        """The channel dimension of a pointwise op's result (joining its tracked operands' groups,
        recording constants to slice), or None after recording why it cannot be."""
        rank = _rank(node)
        out_dims = set()
        for a in tracked:
            dim = self.state[a][1]
            if dim == "tuple":
                self.fail(a, f"{node.name} reads the batch norm's results")
                return None
            out_dims.add(dim + rank - _rank(a))
        gid = self.state[tracked[0]][0]
        for a in tracked[1:]:
            gid = self.union(gid, self.state[a][0])
        group = self.groups[self.find(gid)]
        if len(out_dims) != 1:
            group.reason = group.reason or f"{node.name} combines channels along different dimensions"
            return None
        (out,) = out_dims
        for i, a in enumerate(node.args):
            if not isinstance(a, fx.Node) or a in self.state:
                continue
            ty = node_type(a)
            shape = getattr(ty, "shape", None)
            if shape is None:
                continue
            d = out - (rank - len(shape))
            if d < 0 or shape[d] == 1:
                continue
            if is_constant(a) and len(a.users) == 1:
                group.sides.append(Side(node.name, i, d))
            else:
                group.reason = group.reason or (
                    f"{node.name} ({_op_name(node.target)}) adds {a.name}, which has the channels too "
                    "(a residual connection)")
                return None
        return out

    def reshaped_dim(self, node: fx.Node, x: fx.Node, dim: int) -> int | None:
        """Where the channel dimension lands in a reshape that keeps it whole, else None (with
        the reason recorded). A view's literal C is recorded to be rewritten."""
        before = _shape(x)
        after = _shape(node)
        size = before[dim]
        head, tail = _prod(before[:dim]), _prod(before[dim + 1:])
        for k in range(len(after)):
            if same_size(after[k], size) and same_size(_prod(after[:k]), head) and same_size(_prod(after[k + 1:]), tail):
                if node.target in (aten.view.default, aten._unsafe_view.default, aten.reshape.default):
                    entry = node.args[1][k]
                    if isinstance(entry, int) and entry == size:
                        self.group(x).views.append((node.name, k))
                    elif entry != -1:
                        self.fail(x, f"view {node.name} computes the channel count")
                        return None
                return k
        self.fail(x, f"{node.name} ({_op_name(node.target)}) splits or merges the channel dimension")
        return None


def _reduced_dim(node: fx.Node, x: fx.Node, dim: int) -> int | None:
    rank = _rank(x)
    dims = node.args[1] if len(node.args) > 1 else None
    if dims is None:
        return None
    dims = [d % rank for d in ([dims] if isinstance(dims, int) else dims)]
    if dim in dims:
        return None
    keep = node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False)
    return dim if keep else dim - sum(d < dim for d in dims)


def _is_pointwise(node: fx.Node) -> bool:
    return isinstance(node.target, torch._ops.OpOverload) and torch.Tag.pointwise in node.target.tags


def _op_name(target) -> str:
    return getattr(target, "__name__", str(target))


def _shape(node: fx.Node) -> tuple:
    return tuple(node_type(node).shape)


def _rank(node: fx.Node) -> int:
    return len(_shape(node))


def _prod(dims):
    out = 1
    for d in dims:
        out = out * d
    return out


def same_size(a, b) -> bool:
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return sympy.expand(sympy.sympify(a) - sympy.sympify(b)) == 0


def node_named(gm: fx.GraphModule, name: str) -> fx.Node:
    for n in gm.graph.nodes:
        if n.name == name:
            return n
    raise KeyError(f"no node {name!r} in the graph")


# -- the rewrite -------------------------------------------------------------------------------
def prune_group(gm: fx.GraphModule, group: ChannelGroup, keep: torch.Tensor,
                consumer_maps: dict[str, torch.Tensor] | None = None,
                consumer_means: dict[str, torch.Tensor] | None = None) -> None:
    """Keeps channels `keep` (sorted indices) of `group` in `gm` (found by name): new, smaller
    constants, view sizes rewritten, node types refreshed. `consumer_maps[name]` (in x kept), when
    given, replaces a consumer's weight W by W @ map (a least-squares refit: computed on the
    weight as it is then, so groups sharing a product may be pruned in any order), and with
    `consumer_means[name]` (the mean of each of its input channels) a consumer that has a bias (or
    a convolution) gets the mean output it lost added to it (bias compensation)."""
    consumer_maps, consumer_means = consumer_maps or {}, consumer_means or {}
    new_size = int(keep.numel())
    touched: list[fx.Node] = []
    for name in group.producers:
        node = node_named(gm, name)
        ref = weight_of(node)
        touched.append(replace_constant(gm, ref.reader, ref.constant, take_channels(constant_value(ref.constant), ref.out_dim, keep)))
        b = bias_index(node)
        if b is not None and node.args[b] is not None:
            bias = node.args[b]
            touched.append(replace_constant(gm, node, bias, take_channels(constant_value(bias), 0, keep)))
    for name in group.consumers:
        node = node_named(gm, name)
        ref = weight_of(node)
        value = constant_value(ref.constant)
        w = value.t() if ref.out_dim == 1 else value  # (out, in, *kernel)
        if name in consumer_maps:
            m = consumer_maps[name].to(device=w.device, dtype=w.dtype)
            new = torch.einsum("oi...,ik->ok...", w, m)
        else:
            new = w.index_select(1, keep.to(w.device))
        touched.append(replace_constant(gm, ref.reader, ref.constant, (new.t() if ref.out_dim == 1 else new).contiguous()))
        b = bias_index(node)
        if name in consumer_means and b is not None and (node.args[b] is not None or node.target is _CONV):
            mean = consumer_means[name].to(device=w.device, dtype=torch.float64)
            lost = (w.double().flatten(2).sum(2) if w.dim() > 2 else w.double()) @ mean \
                - (new.double().flatten(2).sum(2) if new.dim() > 2 else new.double()) @ mean[keep.to(w.device)]
            if node.args[b] is None:
                bias = add_constant(gm, lost.to(w.dtype), hint=f"{name}_bias", before=node)
                _set_arg(gm, node, b, bias)
                touched.append(bias)
            else:
                old = constant_value(node.args[b])
                touched.append(replace_constant(gm, node, node.args[b], old + lost.to(old.dtype)))
    for side in group.sides:
        node = node_named(gm, side.node)
        c = node.args[side.arg]
        touched.append(replace_constant(gm, node, c, take_channels(constant_value(c), side.dim, keep)))
    for name, k in group.views:
        node = node_named(gm, name)
        shape = list(node.args[1])
        shape[k] = new_size
        node.args = (node.args[0], shape, *node.args[2:])
        touched.append(node)
    refresh_types(gm, set(touched))


def take_channels(value: torch.Tensor, dim: int, keep: torch.Tensor) -> torch.Tensor:
    return value.index_select(dim, keep.to(value.device)).contiguous()


def replace_constant(gm: fx.GraphModule, reader: fx.Node, old: fx.Node, value: torch.Tensor) -> fx.Node:
    hint = old.target if old.target.endswith("_pruned") else f"{old.target}_pruned"
    new = add_constant(gm, value, hint=hint, before=old)
    reader.replace_input_with(old, new)
    if not old.users:
        gm.graph.erase_node(old)
    return new


def _set_arg(gm: fx.GraphModule, node: fx.Node, index: int, value) -> None:
    args = list(node.args)
    args[index] = value
    node.args = tuple(args)


# -- types after a rewrite ----------------------------------------------------------------------
def refresh_types(gm: fx.GraphModule, touched: set[fx.Node]) -> None:
    """Recomputes `meta["val"]` (under the graph's fake mode, when it has one) and `meta["type"]`
    of every node `touched` (a new constant, a view given new sizes) or whose inputs changed
    shape, in graph order. A graph parsed from text has only
    types: its values are rebuilt from them on the meta device, and only the types are updated."""
    from torch._guards import detect_fake_mode
    fake_mode = detect_fake_mode([n.meta["val"] for n in gm.graph.nodes
                                  if isinstance(n.meta.get("val"), torch.Tensor)])
    values: dict[fx.Node, object] = {}
    changed: set[fx.Node] = {n for n in touched if n.op == "get_attr"}

    def value_of(n: fx.Node):
        if n in values:
            return values[n]
        if "val" in n.meta:
            v = n.meta["val"]
        elif n.op == "get_attr":
            c = constant_value(n)
            v = (fake_mode.from_tensor(c, static_shapes=True) if fake_mode is not None
                 else torch.empty_strided(c.shape, c.stride(), dtype=c.dtype, device="meta"))
        else:
            v = _meta_of_type(node_type(n))
        values[n] = v
        return v

    for node in gm.graph.nodes:
        if node.op == "get_attr":
            c = constant_value(node)
            if node in changed and fake_mode is not None:
                values[node] = fake_mode.from_tensor(c, static_shapes=True)
            continue
        if node.op != "call_function" or node not in touched and not any(a in changed for a in node.all_input_nodes):
            continue
        args, kwargs = fx.node.map_arg((node.args, node.kwargs), value_of)
        if fake_mode is not None:
            with fake_mode:
                v = node.target(*args, **kwargs)
        else:
            v = node.target(*args, **kwargs)
        old = node_type(node)
        if "val" in node.meta or fake_mode is not None:
            node.meta["val"] = v
            if "tensor_meta" in node.meta and isinstance(v, torch.Tensor):
                from torch.fx.passes.shape_prop import _extract_tensor_metadata
                node.meta["tensor_meta"] = _extract_tensor_metadata(v)
        values[node] = v
        new_type = _on_device(type_of_value(v), old)
        node.meta["type"] = new_type
        if new_type != old:
            changed.add(node)


def _meta_of_type(ty):
    from fastc.ir.types import TensorType
    if isinstance(ty, TensorType) and ty.is_static:
        return torch.empty(ty.shape, dtype=ty.dtype, device="meta")
    return None


def _on_device(ty, old):
    """A type computed on the meta device, moved back to the device the node had. An empty
    tensor the node had stays so (inference batch norm's saved statistics are f32[0] on the CPU,
    f32[C] from its meta kernel)."""
    from dataclasses import replace

    from fastc.ir.types import TensorType, TupleType
    if isinstance(ty, TensorType) and ty.device == "meta":
        if isinstance(old, TensorType) and old.shape == (0,):
            return old
        return replace(ty, device=getattr(old, "device", "cpu"))
    if isinstance(ty, TupleType):
        olds = getattr(old, "items", (None,) * len(ty.items))
        return TupleType(tuple(_on_device(t, o) for t, o in zip(ty.items, olds)))
    return ty
