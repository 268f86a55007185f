"""grouped-kv-attention: attention with fewer key/value heads than query heads (grouped-query
attention, LLaMA's `repeat_kv`) reads the key and value heads as they are, not repeated copies."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.types import TensorType, node_type

from .base import Pass, register
from .context import PassContext

aten = torch.ops.aten
# SDPA's CPU flash kernel reads query head h from key/value head h // (heads / kv heads) when k
# and v have fewer heads (what `scaled_dot_product_attention(..., enable_gqa=True)` calls it with).
FLASH_CPU = aten._scaled_dot_product_flash_attention_for_cpu.default


@register
@dataclass(frozen=True)
class GroupedKvAttention(Pass):
    """Rewrites

        k' = view(clone(expand(unsqueeze(k, 2), [b, g, r, s, d])), [b, g * r, s, d])   (v' likewise)
        _scaled_dot_product_flash_attention_for_cpu(q, k', v', ...)
            -> _scaled_dot_product_flash_attention_for_cpu(q, k, v, ...)

    where k and v are (b, g, s, d) and q has g * r heads: the repeat makes head j of k' head
    j // r of k, which is how the kernel reads k and v with fewer heads than q, so the copies go
    (two copy kernels per attention layer). Legal when k and v are repeated by the same r and
    the repeated copies have no other reader; exact (the same values are read).
    """
    name = "grouped-kv-attention"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        rewritten = 0
        for node in list(gm.graph.nodes):
            if node.op != "call_function" or node.target is not FLASH_CPU or len(node.args) < 3:
                continue
            k, v = _repeated(node.args[1]), _repeated(node.args[2])
            if k is None or v is None or k[1] != v[1]:
                continue
            q_type = node_type(node.args[0])
            if not isinstance(q_type, TensorType) or len(q_type.shape) != 4 or q_type.shape[1] != k[1] * k[2]:
                continue
            repeats = (node.args[1], node.args[2])
            node.update_arg(1, k[0])
            node.update_arg(2, v[0])
            for copy in repeats:
                _erase_unread_chain(gm, copy)
            rewritten += 1
        if rewritten:
            gm.graph.lint()
            gm.recompile()
        return rewritten


def _repeated(arg):
    """(the (b, g, s, d) tensor, g, r) when `arg` is that tensor's heads each repeated r times
    by unsqueeze -> expand -> contiguous clone -> view (read by nothing else), else None."""
    if not isinstance(arg, fx.Node) or arg.target not in (aten.view.default, aten._unsafe_view.default):
        return None
    clone = arg.args[0]
    if not isinstance(clone, fx.Node) or clone.target is not aten.clone.default or len(clone.users) != 1:
        return None
    if clone.kwargs.get("memory_format", torch.contiguous_format) != torch.contiguous_format:
        return None
    expand = clone.args[0]
    if not isinstance(expand, fx.Node) or expand.target is not aten.expand.default or len(expand.users) != 1:
        return None
    unsqueeze = expand.args[0]
    if not isinstance(unsqueeze, fx.Node) or unsqueeze.target is not aten.unsqueeze.default or \
            unsqueeze.args[1] != 2 or len(unsqueeze.users) != 1:
        return None
    base = unsqueeze.args[0]
    types = [node_type(n) for n in (base, expand, arg)]
    if not all(isinstance(t, TensorType) and all(isinstance(d, int) for d in t.shape) for t in types):
        return None
    base_t, expand_t, out_t = types
    if len(base_t.shape) != 4 or len(expand_t.shape) != 5:
        return None
    b, g, s, d = base_t.shape
    r = expand_t.shape[2]
    if tuple(expand_t.shape) != (b, g, r, s, d) or tuple(out_t.shape) != (b, g * r, s, d):
        return None
    return base, g, r


def _erase_unread_chain(gm: fx.GraphModule, node: fx.Node) -> None:
    """Erases the repeat (view, clone, expand, unsqueeze) from `node` up, while nothing reads it."""
    for _ in range(4):
        if not isinstance(node, fx.Node) or node.users:
            return
        source = node.args[0]
        gm.graph.erase_node(node)
        node = source
