"""Second moments of the activations that chosen ops read, gathered on calibration inputs.

Activation-aware quantization (GPTQ, ShiftAddLLM) measures a weight's error on the layer's
output, not on the weight: with x the rows reaching a product `x @ W^T`, the output error of a
quantized W is tr(dW H dW^T) with H = X^T X. This module runs the graph on each calibration
batch (one torch.fx.Interpreter run per batch, under no_grad) and, at each watched node, adds
x^T x of the operand it is told to watch, in float64, flattened to rows of its last dimension.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx


@dataclass
class Gram:
    """H = X^T X (float64, in x in, on the CPU) of the rows a node read, and how many rows."""
    matrix: torch.Tensor
    rows: int = 0


def gram_matrices(gm: fx.GraphModule, watched: dict[str, int], batches: list[list]) -> dict[str, Gram]:
    """For each node name in `watched` (name -> index of the argument to watch), X^T X of that
    argument over `batches`, its rows the flattened leading dimensions. A watched node that never
    ran (or had no tensor there) is missing from the result."""
    stats: dict[str, Gram] = {}
    interpreter = _Watcher(gm, watched, stats)
    with torch.no_grad():
        for batch in batches:
            interpreter.run(*batch)
    return stats


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
