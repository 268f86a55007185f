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

from dataclasses import dataclass, field

import sympy
import torch.fx as fx

from .types import TensorType, node_type

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

    def text(self) -> str:
        ops = ", ".join(n.name for n in self.nodes)
        return (f"kernel {self.id} ({self.kind}): {len(self.nodes)} ops [{ops}]; "
                f"reads {_fmt(self.bytes_read())} B, writes {_fmt(self.bytes_written())} B")


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
    if not isinstance(t, TensorType):
        return 0
    size = t.numel()
    return size * _itemsize(t)


def _itemsize(t: TensorType) -> int:
    import torch
    return torch.empty((), dtype=t.dtype).element_size()


def _bytes(nodes):
    total = sum((tensor_bytes(n) for n in nodes), sympy.Integer(0))
    return int(total) if getattr(total, "is_Integer", False) or isinstance(total, int) else total


def _fmt(value) -> str:
    return f"{value:,}" if isinstance(value, int) else str(value)
