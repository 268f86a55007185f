"""remove-noops: removes views, permutes and copies that change nothing."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.op_facts import VIEW_OPS
from fastc.ir.types import TensorType, node_type

from .base import Pass, register
from .context import PassContext

aten = torch.ops.aten


@register
@dataclass(frozen=True)
class RemoveNoops(Pass):
    """Replaces `view/reshape/expand(x, x.shape)`, `permute(x, identity)`, full slices, aliases,
    and copies to x's own dtype, device and layout (a `constant_pad_nd` padding by nothing is one)
    by x itself.

    A no-op view is legal to drop: its result aliases x with x's own sizes and strides. A copy
    (`clone`, same-dtype `_to_copy`) is only dropped when x is a fresh intermediate result read by
    nothing else, so no two values come to share storage that did not before; copies that give a
    new memory format are kept.
    """
    name = "remove-noops"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        removed = 0
        for node in list(gm.graph.nodes):
            if node.op == "call_function" and self._is_noop(node):
                node.replace_all_uses_with(node.args[0])
                gm.graph.erase_node(node)
                removed += 1
        return removed

    def _is_noop(self, node: fx.Node) -> bool:
        if not node.args or not isinstance(node.args[0], fx.Node):
            return False
        src = node.args[0]
        t_in, t_out = node_type(src), node_type(node)
        if not isinstance(t_in, TensorType) or not isinstance(t_out, TensorType) or t_in != t_out:
            return False
        target = node.target
        if target in (aten.view.default, aten._unsafe_view.default, aten.reshape.default,
                      aten.expand.default, aten.alias.default):
            return True
        if target == aten.permute.default:
            return list(node.args[1]) == list(range(len(t_in.shape)))
        if target == aten.slice.Tensor:
            start = node.args[2] if len(node.args) > 2 else None
            end = node.args[3] if len(node.args) > 3 else None
            step = node.args[4] if len(node.args) > 4 else 1
            dim = node.args[1] if len(node.args) > 1 else 0
            size = t_in.shape[dim]
            return start in (None, 0) and step == 1 and (end is None or (
                isinstance(end, int) and isinstance(size, int) and end >= size))
        if target in (aten.clone.default, aten._to_copy.default):
            return self._copy_is_noop(node, src, t_in)
        if target == aten.constant_pad_nd.default:   # padding by nothing: a copy
            return all(p == 0 for p in node.args[1]) and self._fresh(src)
        return False

    def _copy_is_noop(self, node: fx.Node, src: fx.Node, t_in: TensorType) -> bool:
        kwargs = dict(node.kwargs)
        if kwargs.pop("memory_format", torch.preserve_format) != torch.preserve_format:
            return False
        if node.target == aten._to_copy.default:
            if kwargs.pop("dtype", t_in.dtype) != t_in.dtype:
                return False
            if kwargs.pop("layout", torch.strided) != torch.strided:
                return False
            device = kwargs.pop("device", None)
            if device is not None and str(device) != t_in.device:
                return False
            kwargs.pop("non_blocking", None)
        if kwargs:
            return False
        return self._fresh(src)

    @staticmethod
    def _fresh(src: fx.Node) -> bool:
        return src.op == "call_function" and src.target not in VIEW_OPS and len(src.users) == 1
