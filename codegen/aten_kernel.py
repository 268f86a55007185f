"""A planned kernel's ops as a callable of their own: what runs a kernel as ATen on any target
(the wrapper's fallback and ATen candidate), and the graph the cpu target starts from."""
from __future__ import annotations

import functools

import torch
import torch.fx as fx


def ops_module(kernel) -> fx.GraphModule:
    """The kernel's ops as a callable: inputs in kernel-input order -> tuple of outputs."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {n: graph.placeholder(f"in{i}") for i, n in enumerate(kernel.inputs)}
    for node in kernel.nodes:
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[n] for n in kernel.outputs))
    return fx.GraphModule({}, graph)


class DirectOp(functools.partial):
    """An ATen op's C++ entry point (`OpOverload._op`), called without the Python frame of
    `OpOverload.__call__` (a C-level partial with nothing bound: about 0.5-1 us less per call,
    most of what a view costs). Not from torch, so FX code refers to it as a global of its own."""


def direct_calls(gm: fx.GraphModule) -> fx.GraphModule:
    """`gm` calling each ATen op through a DirectOp; the same calls, for running only (passes and
    the cpu target's import need the OpOverloads)."""
    changed = False
    for n in gm.graph.nodes:
        if n.op == "call_function" and isinstance(n.target, torch._ops.OpOverload):
            direct = DirectOp(n.target._op)
            direct.__name__ = f"{n.target.__name__.replace('.', '_')}"
            n.target = direct
            changed = True
    if changed:
        gm.recompile()
    return gm
