"""plan-kernels: partitions a graph into kernels that code generation turns into one kernel each."""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import sympy
import torch
import torch.fx as fx

from fastc.costmodel import Choices, FusionCandidate, KernelFeatures, default_choices
from fastc.ir.types import TensorType, node_type

from .base import Pass, register
from .context import PassContext
from .kernel_ops import OpClass, classify

aten = torch.ops.aten

# Views that keep the row-major order of elements: over a contiguous kernel result they are free.
RESHAPES = {aten.view.default, aten._unsafe_view.default, aten.reshape.default,
            aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default, aten.alias.default}


@dataclass
class _Group:
    id: int
    kind: str                      # "pointwise", "reduction", "matmul", "view"
    nodes: list[fx.Node]
    numel: object = None           # pointwise/matmul: elements computed; reduction: input elements
    rows: object = None            # reduction: number of rows (numel / reduced elements)
    reduced: tuple = ()            # reduction: (input shape, reduced dims)
    matmul: fx.Node | None = None
    members: set = field(default_factory=set)


@register
@dataclass(frozen=True)
class PlanKernels(Pass):
    """Marks groups of ops that run as one generated kernel (`{kernel = N, kind = "..."}`).

    Kinds: pointwise (elementwise ops, broadcasting loads, reshapes), reduction (reductions over
    the same rows with pointwise producers and consumers), matmul (one mm/addmm/bmm with a
    pointwise epilogue). Pointwise kernels that read the same value merge too (siblings: one
    kernel with several outputs). Legal because: kernels are convex (no path leaves a kernel and comes
    back, so kernels run in some order without cycles); no op is in two kernels (no duplicated
    work); mutating and random ops are never fused; the only views fused are reshapes of kernel
    values (same order of elements), never a graph output, so no output alias becomes a copy;
    views of kernel inputs stay ATen views that the kernel reads through strides; within a
    kernel every op covers the same elements (or, in a reduction, the same rows).
    An op is planned only where the op table (fastc.ir.op_table) says the code generator of
    `ctx.target` lowers it; for a target without one ("aten", fastc-opt), where some generator does.
    Which legal fusions to make, and whether a matrix product is in a kernel at all, is the
    choices object's call (`ctx.choices`, else the process-wide one; fastc.costmodel): it is
    offered every legal merge, never an illegal one. The options below only narrow what it is
    offered. Marks only: the ops still compute the same values; code generation follows the marks.
    """
    name = "plan-kernels"
    #: Ops in one kernel, at most (0: no cap of this pass's own; the choices object has one).
    max_ops: int = 0
    #: Pointwise consumers may fuse into a matrix product.
    epilogues: bool = True
    #: Pointwise producers and consumers may fuse into a reduction.
    reductions: bool = True
    #: Matrix products may be in kernels. False: a product runs as an ATen call and its epilogue
    #: as a pointwise kernel (what the choices object prefers on the native CPU target anyway).
    products: bool = True
    #: Pointwise kernels that read the same value may merge (one kernel, several outputs).
    siblings: bool = True

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        choices = ctx.choices if ctx.choices is not None else default_choices()
        for n in gm.graph.nodes:
            n.meta.pop("kernel", None)
            n.meta.pop("kernel_kind", None)
        planner = _Planner(gm, choices, self, ctx.target)
        kernels = 0
        for group in planner.plan():
            nodes, kind = group.nodes, group.kind
            if kind == "matmul" and not (self.products and choices.product_in_kernel(
                    _product_features(group.matmul, len(group.nodes), ctx.target))):
                # The product stays an ATen call (the choices object asked again with the
                # epilogue known; products it refused before planning are not in any group).
                nodes, kind = [n for n in nodes if n is not group.matmul], "pointwise"
            for n in nodes:
                n.meta["kernel"] = kernels
                n.meta["kernel_kind"] = kind
            kernels += bool(nodes)
        _make_kernels_contiguous(gm)
        return kernels


class _Planner:
    def __init__(self, gm: fx.GraphModule, choices: Choices, limits: PlanKernels, target: str):
        self.gm, self.choices, self.limits, self.target = gm, choices, limits, target
        self.order = _order(gm)
        self.classes: dict[fx.Node, OpClass] = {}
        self.group_of: dict[fx.Node, _Group] = {}
        self.groups: dict[int, _Group] = {}
        self.dag = nx.DiGraph()   # groups and the unplanned nodes, as a DAG of ids / nodes

    # -- setup --------------------------------------------------------------------------------
    def plan(self) -> list[_Group]:
        nodes = [n for n in self.gm.graph.nodes]
        for n in nodes:
            cls = classify(n, self.target)
            if cls is None:
                continue
            if cls.kind == "getitem":
                producer = n.args[0]
                if producer in self.group_of:
                    self._add(n, self.group_of[producer])
                continue
            if cls.kind == "matmul" and not self._product_in_kernel(n):
                continue  # an ATen call: its epilogue is free to fuse with what follows instead
            self.classes[n] = cls
            self._add(n, self._new_group(n, cls))
        for n in nodes:
            self.dag.add_node(self._key(n))
            for a in n.all_input_nodes:
                if self._key(a) != self._key(n):
                    self.dag.add_edge(self._key(a), self._key(n))
        for n in nodes:                      # consumers in graph order, each with its producers
            if n not in self.group_of:
                continue
            for a in n.all_input_nodes:
                if a in self.group_of and n in self.group_of:
                    self._try_merge(self.group_of[a], self.group_of[n])
        if self.limits.siblings:
            self._merge_siblings(nodes)
        return self._finish()

    def _merge_siblings(self, nodes: list[fx.Node]):
        """Pointwise kernels that read the same value (rotary embedding's two halves, q's and k's
        scaling) become one kernel with several outputs: one call instead of several, and the
        shared value read once. Same legality as any merge (same elements, convex)."""
        for n in nodes:
            readers: list[_Group] = []
            for u in n.users:
                g = self.group_of.get(u)
                if g is not None and g.kind == "pointwise" and all(g is not r for r in readers):
                    readers.append(g)
            for other in readers[1:]:
                first = self.group_of[readers[0].nodes[0]]   # the group it is in by now
                second = self.group_of[other.nodes[0]]
                self._try_merge(first, second)

    def _product_in_kernel(self, mm: fx.Node) -> bool:
        """Whether matrix product `mm` may be in a kernel at all (the pass's option and the
        choices object's call), decided before planning: a product that stays an ATen call
        leaves its pointwise consumers to fuse with each other and with a reduction after them
        (a residual add and the norm that reads it), rather than with a product they end up
        without."""
        return self.limits.products and self.choices.product_in_kernel(_product_features(mm, 1, self.target))

    def _new_group(self, n: fx.Node, cls: OpClass) -> _Group:
        g = _Group(len(self.groups), cls.kind, [])
        if cls.kind in ("pointwise", "matmul", "view"):
            g.numel = _numel(cls.shape)
        if cls.kind == "matmul":
            g.matmul = n
        if cls.kind == "reduction":
            g.numel = _numel(cls.shape)
            reduced = _numel([cls.shape[d] for d in cls.reduced])
            g.rows = sympy.simplify(g.numel / reduced) if reduced != 0 else 0
            g.reduced = (tuple(cls.shape), cls.reduced)
        self.groups[g.id] = g
        return g

    def _add(self, n: fx.Node, g: _Group):
        g.nodes.append(n)
        g.members.add(n)
        self.group_of[n] = g

    def _key(self, n: fx.Node):
        g = self.group_of.get(n)
        return ("g", g.id) if g is not None else n

    # -- merging --------------------------------------------------------------------------------
    def _try_merge(self, p: _Group, c: _Group):
        if p is c:
            return
        merged = self._merged_kind(p, c)
        if merged is None or not self._offered(p, c) or not self._convex(p, c):
            return
        numel = (p if merged == p.kind else c).numel
        if not self.choices.fuse(FusionCandidate(p.kind, c.kind, merged, len(p.nodes), len(c.nodes),
                                                 _int_or_none(numel), self.target)):
            return
        self._merge(p, c, merged)

    def _offered(self, p: _Group, c: _Group) -> bool:
        """Whether the pass's options let this legal merge be offered to the choices object."""
        limits, kinds = self.limits, {p.kind, c.kind}
        if limits.max_ops and len(p.nodes) + len(c.nodes) > limits.max_ops:
            return False
        return (limits.epilogues or "matmul" not in kinds) and (limits.reductions or "reduction" not in kinds)

    def _merged_kind(self, p: _Group, c: _Group) -> str | None:
        kinds = (p.kind, c.kind)
        if "view" in kinds:
            other = c if p.kind == "view" else p
            view = p if p.kind == "view" else c
            if not self._view_fits(view, other, view_is_producer=view is p):
                return None
            return other.kind
        if kinds == ("pointwise", "pointwise"):
            return "pointwise" if _same(p.numel, c.numel) else None
        if "reduction" in kinds:
            red = p if p.kind == "reduction" else c
            other = c if red is p else p
            if other.kind == "reduction":
                return "reduction" if red.reduced == other.reduced else None
            if other.kind != "pointwise":
                return None
            return "reduction" if (_same(other.numel, red.numel) or _same(other.numel, red.rows)) else None
        if kinds == ("matmul", "pointwise"):
            # An epilogue: every consumer op must depend on the matrix product.
            if not _same(c.numel, p.numel):
                return None
            return "matmul" if self._depends_on(c, p) else None
        return None

    def _view_fits(self, view: _Group, other: _Group, view_is_producer: bool) -> bool:
        (v,) = view.nodes
        if view_is_producer:
            # A view of an outside value stays an ATen view (free: new strides over the same
            # storage); the kernel reads it through its strides.
            return False
        # A view of a kernel value: only reshapes, which keep the order of elements, and not a
        # graph output (an output that is a view must stay a view of what it aliases).
        return v.target in RESHAPES and not any(u.op == "output" for u in v.users)

    def _depends_on(self, c: _Group, p: _Group) -> bool:
        inside = set(p.members)
        for n in c.nodes:  # graph order: producers first
            if any(a in inside for a in n.all_input_nodes):
                inside.add(n)
            else:
                return False
        return True

    def _convex(self, p: _Group, c: _Group) -> bool:
        """No path from p to c through anything else (merging would make a cycle)."""
        pk, ck = ("g", p.id), ("g", c.id)
        if not self.dag.has_edge(pk, ck):
            return not nx.has_path(self.dag, pk, ck) and not nx.has_path(self.dag, ck, pk)
        self.dag.remove_edge(pk, ck)
        try:
            return not nx.has_path(self.dag, pk, ck)
        finally:
            self.dag.add_edge(pk, ck)

    def _merge(self, p: _Group, c: _Group, kind: str):
        keep, gone = (p, c) if p.kind != "view" or c.kind == "view" else (c, p)
        if kind == "reduction" and keep.kind != "reduction":
            keep, gone = gone, keep
        if kind == "matmul" and keep.kind != "matmul":
            keep, gone = gone, keep
        for n in gone.nodes:
            self._add(n, keep)
        keep.nodes.sort(key=self.order)
        keep.kind = kind
        del self.groups[gone.id]
        nx.contracted_nodes(self.dag, ("g", keep.id), ("g", gone.id), self_loops=False, copy=False)

    # -- result ---------------------------------------------------------------------------------
    def _finish(self) -> list[_Group]:
        kernels = []
        for g in sorted(self.groups.values(), key=lambda g: self.order(g.nodes[0])):
            self._drop_escaping_views(g)
            if g.kind == "view" or not any(self.classes.get(n) and self.classes[n].kind != "view"
                                           for n in g.nodes):
                continue
            kernels.append(g)
        return kernels

    def _drop_escaping_views(self, g: _Group):
        """A view whose readers are all outside the kernel stays an ATen view of the kernel's
        result (nothing is gained by copying it out)."""
        changed = True
        while changed:
            changed = False
            for n in list(g.nodes):
                cls = self.classes.get(n)
                if cls is not None and cls.kind == "view" and not any(u in g.members for u in n.users):
                    g.nodes.remove(n)
                    g.members.discard(n)
                    del self.group_of[n]
                    changed = True


def _make_kernels_contiguous(gm: fx.GraphModule):
    """Reorders ops so that each kernel's ops are adjacent (a topological order exists because
    kernels are convex); other ops keep their relative order where dependencies allow."""
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    index = {n: i for i, n in enumerate(nodes)}
    unit = {n: ("k", n.meta["kernel"]) if "kernel" in n.meta else ("n", index[n]) for n in nodes}
    dag = nx.DiGraph()
    first: dict = {}
    for n in nodes:
        dag.add_node(unit[n])
        first.setdefault(unit[n], index[n])
        for a in n.all_input_nodes:
            if a in unit and unit[a] != unit[n]:
                dag.add_edge(unit[a], unit[n])
    output = next(n for n in gm.graph.nodes if n.op == "output")
    members: dict = {}
    for n in nodes:
        members.setdefault(unit[n], []).append(n)
    for u in nx.lexicographical_topological_sort(dag, key=lambda u: first[u]):
        for n in members[u]:
            output.prepend(n)


def _product_features(mm: fx.Node, ops: int, target: str) -> KernelFeatures:
    """A matrix product kernel as the choices object sees it: M, N, K (when static), ops, dtype."""
    out = node_type(mm)
    left = node_type(mm.args[1] if mm.target is aten.addmm.default else mm.args[0])
    sizes = {"M": out.shape[-2], "N": out.shape[-1], "K": left.shape[-1]}
    static = all(isinstance(v, int) for v in sizes.values())
    return KernelFeatures(mm.name, "matmul", target, sizes=sizes if static else None, ops=ops,
                          dtype=str(out.dtype).removeprefix("torch."), device=out.device.split(":")[0])


def _int_or_none(v):
    return int(v) if isinstance(v, int) or (isinstance(v, sympy.Basic) and v.is_Integer) else None


def _numel(shape):
    out = sympy.Integer(1)
    for d in shape:
        out = out * d
    return sympy.simplify(out)


def _same(a, b) -> bool:
    if a is None or b is None:
        return False
    return sympy.simplify(sympy.sympify(a) - sympy.sympify(b)) == 0


def _order(gm: fx.GraphModule):
    index = {n: i for i, n in enumerate(gm.graph.nodes)}
    return lambda n: index[n]
