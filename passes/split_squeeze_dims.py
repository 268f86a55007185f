"""split-squeeze-dims: `squeeze.dims` as one `squeeze.dim` per dim."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.types import TensorType, node_type

from .base import Pass, register
from .context import PassContext

aten = torch.ops.aten


@register
@dataclass(frozen=True)
class SplitSqueezeDims(Pass):
    """Replaces `aten.squeeze.dims(x, dims)` by a chain of `aten.squeeze.dim`, one per dim of
    `dims` (each counted once, negative ones from the end), the last dim first so that the dims
    still to squeeze keep their positions.

    Run by the cpu target on each kernel's graph before torch-mlir imports it: torch-mlir
    (20261001) has no lowering for squeeze.dims (logsumexp's graph has one). Always legal: like
    squeeze.dims, squeeze.dim leaves a dim whose size is not 1 as it is.
    """
    name = "split-squeeze-dims"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        rewritten = 0
        for node in list(gm.graph.nodes):
            if node.target is not aten.squeeze.dims:
                continue
            x, dims = node.args[0], node.args[1]
            t = node_type(x)
            if not isinstance(t, TensorType):
                continue
            rank = len(t.shape)
            value = x
            with gm.graph.inserting_before(node):
                for d in sorted({d % max(rank, 1) for d in dims}, reverse=True):
                    value = _squeeze_dim(gm.graph, value, d)
            node.replace_all_uses_with(value)
            gm.graph.erase_node(node)
            rewritten += 1
        return rewritten


def _squeeze_dim(graph: fx.Graph, x: fx.Node, d: int) -> fx.Node:
    new = graph.call_function(aten.squeeze.dim, (x, d))
    if "val" in x.meta:  # a captured graph: the example value, and the type from it
        new.meta["val"] = aten.squeeze.dim(x.meta["val"], d)
        new.meta["type"] = node_type(new)
    else:
        t = node_type(x)
        shape = t.shape if not t.shape or t.shape[d] != 1 else t.shape[:d] + t.shape[d + 1:]
        new.meta["type"] = TensorType(t.dtype, shape, t.device)
    return new
