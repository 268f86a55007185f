"""index-as-view: advanced indexing by constant aranges (what HF's attention-mask code writes as
`mask[batch_arange[:, None, None, None], kv_arange[None, None, None, :]]`) as a view."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.constants import constant_value, is_constant
from fastc.ir.op_facts import is_mutating, returned
from fastc.ir.types import TensorType, node_type

from .base import Pass, register
from .context import PassContext

aten = torch.ops.aten


@register
@dataclass(frozen=True)
class IndexAsView(Pass):
    """Rewrites `index(x, [i0, ..., ik-1])` where each i_j is a constant integer tensor holding
    `arange(x.shape[j])` along one dim d_j (size 1 in every other dim, all of the same rank),
    with d_0 < d_1 < ...: element p of the result is x[p[d_0], ..., p[d_k-1], ...], which is x
    with size-1 dims inserted, so

        index(x, [arange(8).view(8, 1, 1, 1), arange(8).view(1, 1, 1, 8)])  ->  view(x, [8, 1, 1, 8])

    one view instead of a gather (ATen's advanced indexing: ~8 us a call here). The result then
    shares x's storage where indexing made a copy: legal when the graph mutates nothing and does
    not return the result (or a view of it). Exact.
    """
    name = "index-as-view"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        if any(n.op == "call_function" and is_mutating(n) for n in gm.graph.nodes):
            return 0
        rewritten = 0
        for node in list(gm.graph.nodes):
            shape = _view_shape(node)
            if shape is None or returned(node):
                continue
            with gm.graph.inserting_before(node):
                view = gm.graph.call_function(aten.view.default, (node.args[0], shape))
            view.meta.update({k: node.meta[k] for k in ("type", "nn_module_stack", "stack_trace") if k in node.meta})
            x_val = node.args[0].meta.get("val")
            if isinstance(x_val, torch.Tensor):
                mode = getattr(x_val, "fake_mode", None)
                if mode is not None:
                    with mode:
                        view.meta["val"] = aten.view.default(x_val, shape)
            view.name = f"{node.name}_view"
            node.replace_all_uses_with(view)
            gm.graph.erase_node(node)
            rewritten += 1
        if rewritten:
            gm.graph.lint()
            gm.recompile()
        return rewritten


def _view_shape(node: fx.Node) -> list[int] | None:
    """The shape x is viewed as, when `node` is an index by constant aranges (see the pass)."""
    if node.op != "call_function" or node.target is not aten.index.Tensor or len(node.args) != 2:
        return None
    x, indices = node.args
    x_type = node_type(x) if isinstance(x, fx.Node) else None
    if not isinstance(x_type, TensorType) or not all(isinstance(d, int) for d in x_type.shape):
        return None
    if not isinstance(indices, (list, tuple)) or not indices or len(indices) > len(x_type.shape):
        return None
    if not all(isinstance(i, fx.Node) and is_constant(i) for i in indices):
        return None
    values = [constant_value(i) for i in indices]
    rank = values[0].dim()
    shape, last = [1] * rank, -1
    for j, v in enumerate(values):
        n = x_type.shape[j]
        if v.dtype not in (torch.int64, torch.int32) or v.dim() != rank:
            return None
        dims = [d for d in range(rank) if v.shape[d] != 1]
        d = dims[0] if len(dims) == 1 else (None if dims or n != 1 else last + 1)
        if d is None or d <= last or d >= rank or v.shape[d] != n:
            return None
        if not torch.equal(v.reshape(-1), torch.arange(n, dtype=v.dtype)):
            return None
        shape[d], last = n, d
    result = [*shape, *x_type.shape[len(values):]]
    out_type = node_type(node)
    if not isinstance(out_type, TensorType) or list(out_type.shape) != result:
        return None
    return result
