"""A planned kernel's ops as a callable of their own: what runs a kernel as ATen on any target
(the wrapper's fallback and ATen candidate), and the graph the cpu target starts from."""
from __future__ import annotations

import torch.fx as fx


def ops_module(kernel) -> fx.GraphModule:
    """The kernel's ops as a callable: inputs in kernel-input order -> tuple of outputs."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {n: graph.placeholder(f"in{i}") for i, n in enumerate(kernel.inputs)}
    for node in kernel.nodes:
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[n] for n in kernel.outputs))
    return fx.GraphModule({}, graph)
