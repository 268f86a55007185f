"""The residual blocks of a graph, found from the module scopes of its ops, and how to remove one.

A block is the ops of one module instance in a repeated stack: a scope whose last path component is
an index (`layers.3`, `blocks.1`, `layer1.0`, `encoder.layer.2`, `encoder_layer_4`), everything
under it included (`layers.3.attn.wq`). It is a *residual* block when its ops, read from its input
stream x (the one value computed before the block that it adds back), form

    x -> [residual add: s + f(s), s on the stream] -> ... -> output

where an op is on the stream if it is x, a residual add (`aten.add.Tensor` of a stream value and a
value computed from it by the block's ops, same type, no broadcasting), or an op of the block whose
only input that depends on the graph's inputs is a stream value, whose type is x's and which mixes
no features with weights (a ReLU or a norm after the add; not a convolution or a product). That covers pre-norm transformer layers (two residual adds, attention then
MLP: the whole layer is one block, not each sub-block), post-norm layers (BERT: add then LayerNorm,
twice) and ResNet basic / bottleneck blocks with an identity shortcut (add then ReLU).

Not a block, and why (`find_blocks` returns the reasons):
- the output's type (shape, dtype) differs from every input's: a downsampling stage, a projection
  shortcut; the residual cannot pass through in its place;
- no residual add reaches the output: a plain (non-residual) layer, or a block whose shortcut is
  computed (a 1x1 convolution): removing it would not leave the stream it was trained around;
- more than one value computed from the graph's inputs leaves the block (a cache, an attention map
  returned by the model): removing it would change what those uses see.
Values computed only from constants (a mask, rotary tables) may be shared with later blocks: they
stay when the block goes. When stacked scopes both qualify (`stages.0` and `stages.0.layers.1`),
the innermost are the blocks: one layer each.

Removing a block: every use of its output reads x instead, then the block's ops that nothing reads
any more are erased, with the constants only they read (and nothing else: the module attributes
of those constants go with drop_unused_constants).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch
import torch.fx as fx

from fastc.ir import node_scope, node_type
from fastc.ir.op_facts import has_effects
from fastc.ir.types import TensorType, TupleType

aten = torch.ops.aten

#: Ops that mix features with weights: the residual branch, never the stream passed on.
_MIXING = {aten.convolution.default, aten.mm.default, aten.addmm.default, aten.bmm.default,
           aten.linear.default, aten.matmul.default, aten.embedding.default}

#: A path component that indexes a repeated stack: "3" (ModuleList, Sequential) or "encoder_layer_3".
_INDEX = re.compile(r"(\d+|.*_\d+)")


@dataclass
class ResidualBlock:
    scope: str                 # "layers.3"
    cls: str | None            # "Block"
    input: str                 # the input stream's node name
    output: str                # the node whose value leaves the block
    residual_adds: list[str]   # the residual adds on the way from input to output, in order
    nodes: list[str] = field(default_factory=list)  # the block's ops, in graph order
    #: An op of the block reading the input stream, and where: removing the block before it
    #: changes the stream's node (to that block's input), and this finds the new one.
    reader: tuple[str, int] | None = None
    order: int = 0             # position of its first op in the graph

    @property
    def label(self) -> str:
        return f"{self.scope} ({self.cls})" if self.cls else self.scope


def find_blocks(gm: fx.GraphModule) -> tuple[list[ResidualBlock], list[str]]:
    """The residual blocks of `gm` in graph order, and one line per indexed scope that is not one
    (or holds no block), saying why."""
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    dynamic = _dynamic_nodes(nodes)
    members: dict[str, list[fx.Node]] = {}
    classes: dict[str, str | None] = {}
    for n in nodes:
        if n.op != "call_function":
            continue
        scope = node_scope(n)
        if scope is None:
            continue
        path, cls = scope
        parts = path.split(".")
        for i, part in enumerate(parts):
            if _INDEX.fullmatch(part):
                prefix = ".".join(parts[:i + 1])
                members.setdefault(prefix, []).append(n)
                if i == len(parts) - 1:
                    classes[prefix] = cls
    blocks: list[ResidualBlock] = []
    reasons: dict[str, str] = {}
    # Innermost first: a scope holding a block is not one itself.
    for prefix in sorted(members, key=lambda p: (-p.count("."), p)):
        if any(b.scope.startswith(prefix + ".") for b in blocks):
            continue
        found = _block(prefix, classes.get(prefix), members[prefix], dynamic)
        if isinstance(found, str):
            reasons[prefix] = found
        else:
            found.order = position[members[prefix][0]]
            blocks.append(found)
    blocks.sort(key=lambda b: b.order)
    # Why not, for the outermost scopes only, and none holding or inside a block.
    notes = [f"{p}: {why}" for p, why in sorted(reasons.items())
             if not any(p.startswith(q + ".") for q in reasons)
             and not any(b.scope.startswith(p + ".") or p.startswith(b.scope + ".") for b in blocks)]
    return blocks, notes


def remove_block(gm: fx.GraphModule, block: ResidualBlock) -> int:
    """Removes `block` from `gm` (found by name): its output's uses read its input stream, and its
    ops left unused are erased. Returns how many ops were erased."""
    by_name = {n.name: n for n in gm.graph.nodes}
    output = by_name[block.output]
    reader = by_name.get(block.reader[0]) if block.reader else None
    stream = reader.args[block.reader[1]] if reader is not None else by_name[block.input]
    output.replace_all_uses_with(stream)
    erased, read = 0, []
    for name in reversed(block.nodes):
        n = by_name.get(name)
        if n is not None and not n.users and _removable(n):
            read += [a for a in n.all_input_nodes if a.op == "get_attr"]
            gm.graph.erase_node(n)
            erased += 1
    for c in dict.fromkeys(read):  # the constants only the block read
        if not c.users:
            gm.graph.erase_node(c)
    return erased


# -- the search --------------------------------------------------------------------------------
def _block(prefix: str, cls: str | None, ops: list[fx.Node], dynamic: set[fx.Node]) -> ResidualBlock | str:
    inside = set(ops)
    leaving = [n for n in ops if n in dynamic and any(u not in inside for u in n.users)]
    if not leaving:
        return "nothing computed from the inputs leaves it"
    if len(leaving) > 1:
        return f"{len(leaving)} values leave it ({', '.join(n.name for n in leaving)})"
    (output,) = leaving
    out_type = node_type(output)
    if not isinstance(out_type, TensorType):
        return f"its output {output.name} is not a tensor"
    inputs = []
    for n in ops:
        for a in n.all_input_nodes:
            if a not in inside and a in dynamic and a not in inputs:
                inputs.append(a)
    same = [a for a in inputs if node_type(a) == out_type]
    if not same:
        shown = ", ".join(f"{a.name}: {node_type(a)}" for a in inputs) or "none"
        return f"its output {output.name}: {out_type} has the type of no input ({shown})"
    for x in same:
        adds = _residual_path(x, output, ops, inside, dynamic, out_type)
        if adds:
            reader = next(((n.name, i) for n in ops for i, a in enumerate(n.args) if a is x), None)
            return ResidualBlock(prefix, cls, x.name, output.name, [a.name for a in adds],
                                 [n.name for n in ops], reader=reader)
    return f"no residual add of its input ({', '.join(a.name for a in same)}) reaches its output {output.name}"


def _residual_path(x: fx.Node, output: fx.Node, ops: list[fx.Node], inside: set[fx.Node],
                   dynamic: set[fx.Node], out_type) -> list[fx.Node]:
    """The residual adds on the stream from x to output (see the module docstring), [] if the
    output is not on the stream or no residual add leads to it."""
    adds_to: dict[fx.Node, list[fx.Node]] = {x: []}  # stream node -> residual adds leading to it
    for n in ops:
        inputs = [a for a in n.all_input_nodes if a in dynamic]
        t = node_type(n)
        if n.op == "call_function" and n.target is aten.add.Tensor and len(n.args) >= 2 \
                and all(isinstance(a, fx.Node) for a in n.args[:2]) and t == out_type \
                and node_type(n.args[0]) == out_type and node_type(n.args[1]) == out_type:
            p, q = n.args[0], n.args[1]
            for s, f in ((p, q), (q, p)):
                if s in adds_to and f is not s and _depends_on(f, s, inside):
                    adds_to[n] = adds_to[s] + [n]
                    break
            if n in adds_to:
                continue
        if len(inputs) == 1 and inputs[0] in adds_to and n.target not in _MIXING \
                and (t == out_type or _first_item_is(t, out_type)):
            adds_to[n] = adds_to[inputs[0]]
    return adds_to.get(output, [])


def _first_item_is(t, out_type) -> bool:
    """A tuple-valued op (native_layer_norm) whose first result has the stream's type."""
    return isinstance(t, TupleType) and bool(t.items) and t.items[0] == out_type


def _depends_on(f: fx.Node, s: fx.Node, inside: set[fx.Node]) -> bool:
    """Whether f is computed from s by ops of the block."""
    seen, todo = set(), [f]
    while todo:
        n = todo.pop()
        if n is s:
            return True
        if n in seen or n not in inside:
            continue
        seen.add(n)
        todo.extend(n.all_input_nodes)
    return False


def _dynamic_nodes(nodes: list[fx.Node]) -> set[fx.Node]:
    """Nodes whose value depends on a tensor input of the graph (not only on constants and sizes)."""
    dynamic: set[fx.Node] = set()
    for n in nodes:
        t = node_type(n)
        if not isinstance(t, (TensorType, TupleType)):
            continue  # sizes (sym_size, SymInt inputs) and scalars
        if n.op == "placeholder" or any(a in dynamic for a in n.all_input_nodes):
            dynamic.add(n)
    return dynamic


def _removable(n: fx.Node) -> bool:
    """Unused and without effects (attention whose dropout is 0 draws no random numbers)."""
    return not has_effects(n)
