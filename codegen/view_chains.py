"""Views between kernels as one step each: a chain of view ops (view, permute, transpose, slice,
select, expand, ...) from one value becomes a single call that makes the chain's result
directly, with the sizes, strides and storage offset the chain gives.

Why: in the runner's code every view op is an ATen call through the dispatcher, about 1.7 us on
this project's CPU; an attention layer reads its projections through view -> view -> permute and
writes its result back through permute -> view -> view. A chain of views is a pure function of
its input's sizes and strides (and, for the offset, of the input's own offset plus a fixed
amount). So `ViewChain` runs the ops once, keeps what they made, and afterwards, for an input of
the same sizes and strides (two tuple compares), makes that view in one call
(`_reinterpret_tensor`, the helper Inductor's generated code uses for the same, else
`as_strided`): about 0.8 us for the whole chain. An input with other sizes or strides runs the
ops one by one, so the result is always the chain's own; nothing is taken from example values.

Which views are taken (`view_chains`): ops of `CHAINABLE` whose other arguments are literals; a
view whose every reader is another chained view is not made at all (its readers start from its
root).
"""
from __future__ import annotations

import torch
import torch.fx as fx

aten = torch.ops.aten

#: View ops whose result is a function of their input's sizes, strides and offset and their
#: arguments (not reshape: it copies when it must; not as_strided: its offset is absolute).
CHAINABLE = frozenset({
    aten.view.default, aten._unsafe_view.default, aten.permute.default, aten.expand.default,
    aten.slice.Tensor, aten.alias.default, aten.squeeze.dim, aten.squeeze.dims, aten.unsqueeze.default,
    aten.t.default, aten.transpose.int, aten.select.int, aten.diagonal.default,
})

try:  # what Inductor's generated wrappers call to make a view of known sizes and strides (its
    # offset is counted from the tensor's own storage offset)
    from torch._C._dynamo.guards import _reinterpret_tensor as _reinterpret
except ImportError:  # pragma: no cover - another torch: the dispatcher's as_strided
    def _reinterpret(x, size, stride, offset, _as_strided=torch.ops.aten.as_strided.default._op):
        return _as_strided(x, size, stride, x.storage_offset() + offset)


class ViewChain:
    """The result of `ops` applied to a tensor in turn. The first call runs them and keeps what
    they made (sizes, strides, offset from the input's); a later call on an input of the same
    sizes and strides makes that view in one call, any other input runs the ops again."""

    def __init__(self, name: str, ops: list):
        self.__name__ = name
        self.ops = ops          # [(callable, extra args)] of the chain, root first
        self.plan = None        # (input sizes, input strides, sizes, strides, offset), once learned

    def __call__(self, x):
        plan = self.plan
        if plan is not None and x.stride() == plan[1] and x.shape == plan[0]:
            return _reinterpret(x, plan[2], plan[3], plan[4])
        y = x
        for op, rest in self.ops:
            y = op(y, *rest)
        if plan is None:  # one tuple, set at once: another thread sees all of it or none
            self.plan = (tuple(x.shape), x.stride(), tuple(y.shape), y.stride(),
                         y.storage_offset() - x.storage_offset())
        return y

    def __repr__(self) -> str:
        return f"ViewChain({self.__name__}: {len(self.ops)} views)"


def chainable(node: fx.Node) -> bool:
    """A view op of `CHAINABLE` whose arguments other than its input are literals, on a dense
    real tensor as far as the example value tells (complex tensors carry conjugate and negative
    bits a reinterpreted view would have to keep: they run their ops)."""
    if node.op != "call_function" or node.target not in CHAINABLE or node.kwargs:
        return False
    if not node.args or not isinstance(node.args[0], fx.Node):
        return False
    val = node.meta.get("val")
    if isinstance(val, torch.Tensor) and (val.layout != torch.strided or val.is_complex()):
        return False
    return node.all_input_nodes == [node.args[0]]  # every other argument a literal


def view_chains(nodes) -> tuple[dict[fx.Node, tuple[fx.Node, ViewChain]], set[fx.Node]]:
    """For graph nodes `nodes` (in order): {view node: (its chain's root, the ViewChain making it)}
    for each chained view something other than a chained view reads, and the chained views
    nothing needs (made by no step)."""
    chain_of: dict[fx.Node, tuple[fx.Node, list[fx.Node]]] = {}
    for n in nodes:
        if not chainable(n):
            continue
        src = n.args[0]
        root, before = chain_of.get(src, (src, []))
        chain_of[n] = (root, before + [n])
    made, skipped = {}, set()
    for n, (root, chain) in chain_of.items():
        if n.users and all(u in chain_of for u in n.users):
            skipped.add(n)
            continue
        made[n] = (root, _chain(chain))
    return made, skipped


def _chain(chain: list[fx.Node]) -> ViewChain:
    from .aten_kernel import DirectOp
    return ViewChain(chain[-1].name, [(DirectOp(n.target._op), tuple(n.args[1:])) for n in chain])
