"""Second moments of the activations that chosen ops read, gathered on calibration inputs.

Activation-aware quantization (GPTQ, ShiftAddLLM) measures a weight's error on the layer's
output, not on the weight: with x the rows reaching a product `x @ W^T`, the output error of a
quantized W is tr(dW H dW^T) with H = X^T X. This module runs the graph on each calibration
batch (one torch.fx.Interpreter run per batch, under no_grad) and, at each watched node, adds
x^T x of the operand it is told to watch, in float64, flattened to rows of its last dimension.

`swapped_outputs` measures end-to-end sensitivity instead: what the graph outputs when one node's
value is replaced (a product computed with a quantized weight), for many such swaps, each
running only the part of the graph after the swapped node.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.fx as fx


@dataclass
class Gram:
    """H = X^T X (float64, in x in, on the CPU) of the rows a node read, and how many rows."""
    matrix: torch.Tensor
    rows: int = 0


def gram_matrices(gm: fx.GraphModule, watched: dict[str, int], batches: list[list],
                  on_output: Callable[[int, object], None] | None = None) -> dict[str, Gram]:
    """For each node name in `watched` (name -> index of the argument to watch), X^T X of that
    argument over `batches`, its rows the flattened leading dimensions. A watched node that never
    ran (or had no tensor there) is missing from the result. `on_output(i, outputs)`, if given,
    sees what the graph returned on batch i."""
    stats: dict[str, Gram] = {}
    interpreter = _Watcher(gm, watched, stats)
    with torch.no_grad():
        for i, batch in enumerate(batches):
            out = interpreter.run(*batch)
            if on_output is not None:
                on_output(i, out)
    return stats


#: (key, value) -> None: told what the graph returned with one swap.
SwapReport = Callable[[object, object], None]


def swapped_outputs(gm: fx.GraphModule, batch: list,
                    swaps: dict[str, list[tuple[object, Callable[[tuple, dict], object]]]],
                    report: SwapReport) -> None:
    """Runs `gm` on `batch` once, node by node; at each node named in `swaps`, for each
    (key, value_of) there, the node takes the value `value_of(args, kwargs)` instead of its own
    (args and kwargs: its fetched operands), the rest of the graph runs from there on a copy of
    the live values (the nodes before are not run again), and `report(key, outputs)` gets the
    graph's outputs. The walk keeps only the values later nodes read, as fx.Interpreter does."""
    nodes = list(gm.graph.nodes)
    position = {n: i for i, n in enumerate(nodes)}
    dies_after: list[list[fx.Node]] = [[] for _ in nodes]
    for n in nodes:
        dies_after[max((position[u] for u in n.users), default=position[n])].append(n)
    interpreter = fx.Interpreter(gm, garbage_collect_values=False)
    interpreter.args_iter = iter(batch)

    def run(env: dict, start: int):
        for i in range(start, len(nodes)):
            n = nodes[i]
            interpreter.env = env
            value = interpreter.run_node(n)
            if n.op == "output":
                return value
            env[n] = value
            for dead in dies_after[i]:
                env.pop(dead, None)
        return None

    last = max((i for i, n in enumerate(nodes) if swaps.get(n.name)), default=-1)
    env: dict = {}
    with torch.no_grad():
        for i, n in enumerate(nodes[:last + 1]):
            interpreter.env = env
            for key, value_of in swaps.get(n.name, ()):
                with interpreter._set_current_node(n):
                    args, kwargs = interpreter.fetch_args_kwargs_from_env(n)
                fork = dict(env)
                fork[n] = value_of(args, kwargs)
                for dead in dies_after[i]:
                    if dead is not n:
                        fork.pop(dead, None)
                report(key, run(fork, i + 1))
                interpreter.env = env
            if i == last:
                return  # no swap after this one: the rest of the walk would change nothing
            env[n] = interpreter.run_node(n)
            for dead in dies_after[i]:
                env.pop(dead, None)


class _Watcher(fx.Interpreter):
    def __init__(self, gm: fx.GraphModule, watched: dict[str, int], stats: dict[str, Gram]):
        super().__init__(gm)
        self.watched, self.stats = watched, stats

    def call_function(self, target, args, kwargs):
        index = self.watched.get(self._current)
        if index is not None and index < len(args) and isinstance(args[index], torch.Tensor):
            x = args[index].detach()
            rows = x.reshape(-1, x.shape[-1]).to(torch.float64)
            product = (rows.T @ rows).cpu()
            gram = self.stats.get(self._current)
            if gram is None:
                self.stats[self._current] = Gram(product, rows.shape[0])
            else:
                gram.matrix += product
                gram.rows += rows.shape[0]
        return super().call_function(target, args, kwargs)

    def run_node(self, n: fx.Node):
        self._current = n.name
        return super().run_node(n)
