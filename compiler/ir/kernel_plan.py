"""A kernel plan: which ops of a graph run together as one generated kernel.

The plan lives on the graph itself: `node.meta["kernel"] = id` on every op of a kernel (the text
form prints it as `{kernel = 3}` after the op). `KernelPlan.of(gm)` rebuilds the kernels from
those marks, so a plan survives printing and parsing, and passes after planning see it.

Ops without a mark run as ATen calls. The planning pass (fastc.passes.plan_kernels) guarantees:
a kernel's ops are connected, reading a kernel's outputs never feeds back into the same kernel
(no cycles between kernels), and each kernel has one kind:

- "pointwise": elementwise ops (with broadcasting) and views between them;
- "reduction": one or more reductions over the same rows, with pointwise producers/consumers;
- "matmul": one mm/addmm/bmm with a pointwise epilogue.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass, field

import sympy
import torch.fx as fx

from .types import TensorType, TupleType, node_type

KINDS = ("pointwise", "reduction", "matmul")


@dataclass
class Kernel:
    id: int
    kind: str
    nodes: list[fx.Node]                              # the kernel's ops, in graph order
    inputs: list[fx.Node] = field(default_factory=list)   # values read from outside, in order of first use
    outputs: list[fx.Node] = field(default_factory=list)  # values read outside the kernel (or graph outputs)

    @property
    def name(self) -> str:
        return f"k{self.id}_{self.kind}"

    def bytes_read(self):
        return _bytes(self.inputs)

    def bytes_written(self):
        return _bytes(self.outputs)

    def unfused_bytes(self):
        """Bytes the same ops move when each runs alone: every op reads its inputs and writes
        its result (views and getitems move nothing)."""
        from fastc.ir.op_facts import VIEW_OPS
        total = 0
        for n in self.nodes:
            if n.target in VIEW_OPS or n.target is operator.getitem:
                continue
            total = total + _bytes(n.all_input_nodes) + _bytes([n])
        return _simplify(total)

    def text(self) -> str:
        ops = ", ".join(n.name for n in self.nodes)
        moved = _simplify(self.bytes_read() + self.bytes_written())
        return (f"kernel {self.id} ({self.kind}): {len(self.nodes)} ops [{ops}]; "
                f"reads {_fmt(self.bytes_read())} B, writes {_fmt(self.bytes_written())} B: "
                f"moves {_fmt(moved)} B where the ops one by one move {_fmt(self.unfused_bytes())} B")


@dataclass
class KernelPlan:
    kernels: list[Kernel]

    @staticmethod
    def of(gm: fx.GraphModule) -> "KernelPlan":
        """The kernels marked on `gm`'s ops (empty when it has not been planned)."""
        groups: dict[int, list[fx.Node]] = {}
        for n in gm.graph.nodes:
            if n.op == "call_function" and "kernel" in n.meta:
                groups.setdefault(n.meta["kernel"], []).append(n)
        kernels = []
        for kid, nodes in sorted(groups.items()):
            members = set(nodes)
            inputs: list[fx.Node] = []
            for n in nodes:
                for a in n.all_input_nodes:
                    if a not in members and a not in inputs:
                        inputs.append(a)
            outputs = [n for n in nodes if any(u not in members for u in n.users)]
            kind = nodes[0].meta.get("kernel_kind", "pointwise")
            kernels.append(Kernel(kid, kind, nodes, inputs, outputs))
        return KernelPlan(kernels)

    def kernel_of(self, node: fx.Node) -> Kernel | None:
        for k in self.kernels:
            if node in k.nodes:
                return k
        return None

    def text(self) -> str:
        return "\n".join(k.text() for k in self.kernels)


def tensor_bytes(node: fx.Node):
    t = node_type(node)
    if isinstance(t, TupleType):
        return sum((x.numel() * _itemsize(x) for x in t.items if isinstance(x, TensorType)), 0)
    if not isinstance(t, TensorType):
        return 0
    return t.numel() * _itemsize(t)


def _itemsize(t: TensorType) -> int:
    return t.dtype.itemsize


def _bytes(nodes):
    return _simplify(sum((tensor_bytes(n) for n in nodes), sympy.Integer(0)))


def _simplify(total):
    total = sympy.sympify(total)
    return int(total) if total.is_Integer else sympy.simplify(total)


def _fmt(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
