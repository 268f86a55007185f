"""fuse-attention: attention written out as matrix products and a softmax, as one
scaled_dot_product_attention."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx as fx

from fastc.ir.types import TensorType, node_type

from .base import Pass, register
from .context import PassContext

aten = torch.ops.aten
SDPA = aten.scaled_dot_product_attention.default
RESHAPES = (aten.view.default, aten._unsafe_view.default, aten.reshape.default)
# Ops that leave a value's elements where they are and accept any strides (so the attention's
# output may keep the layout SDPA gives it when only these and copies read it).
STRIDED_VIEWS = (aten.permute.default, aten.transpose.int, aten.select.int, aten.slice.Tensor,
                 aten.unsqueeze.default, aten.squeeze.dim, aten.expand.default, aten.alias.default)


@register
@dataclass(frozen=True)
class FuseAttention(Pass):
    """Rewrites attention spelled out as products and a softmax (what `softmax(q @ k.T * s) @ v`
    becomes in an ATen graph: batched products over copies of q, k^T and v folded to 3-D) as one
    `aten.scaled_dot_product_attention(q, k, v, mask, scale=s)`:

        view(bmm(view(softmax(view(bmm(view(clone(q)), view(clone(permute(k)))))) * s + mask), view(clone(v))))
            -> scaled_dot_product_attention(q, k, v, mask, scale=s)

    The scale is a number multiplying (or dividing) the scores, the mask an optional tensor added
    to them before the softmax (over the last dimension); k is read transposed over its last two
    dimensions. Legal when q, k, v and the scores share their leading (batch, head) dimensions and
    the scores, probabilities and products have no other reader (so a training graph that keeps
    the probabilities for its backward is left alone). Exact up to float rounding (SDPA's kernels
    accumulate the softmax in another order). SDPA's CPU kernel writes its output in (batch, row,
    head) order; a graph that views the output in a way needing it contiguous reads a copy.
    """
    name = "fuse-attention"

    def run(self, gm: fx.GraphModule, ctx: PassContext) -> int:
        fused = 0
        for node in list(gm.graph.nodes):
            if node.op == "call_function" and node.target in (aten._softmax.default, aten.softmax.int):
                fused += _fuse(gm, node)
        if fused:
            gm.graph.lint()
            gm.recompile()
        return fused


def _only_reader(node):
    users = [u for u in node.users if u.target is not aten.sym_size.int]
    return users[0] if len(users) == 1 and len(users) == len(node.users) else None


def _shape(node):
    t = node_type(node) if isinstance(node, fx.Node) else None
    return tuple(t.shape) if isinstance(t, TensorType) else None


def _unfolded(node: fx.Node):
    """The N-D tensor a 3-D product operand was folded from: through one reshape, then through
    same-shape copies and expands (what matmul inserts), else None."""
    if not isinstance(node, fx.Node) or node.target not in RESHAPES:
        return None
    src = node.args[0]
    while isinstance(src, fx.Node) and src.target in (aten.clone.default, aten.expand.default) and \
            isinstance(src.args[0], fx.Node) and _shape(src.args[0]) == _shape(src):
        src = src.args[0]
    return src if isinstance(src, fx.Node) and _shape(src) is not None and len(_shape(src)) >= 3 else None


def _untransposed(node: fx.Node):
    """k when `node` is k with its last two dimensions swapped, else None."""
    if not isinstance(node, fx.Node) or _shape(node) is None:
        return None
    rank = len(_shape(node))
    if node.target is aten.permute.default:
        perm = [d % rank for d in node.args[1]]
        if perm == [*range(rank - 2), rank - 1, rank - 2]:
            return node.args[0]
    if node.target is aten.transpose.int and {d % rank for d in node.args[1:3]} == {rank - 2, rank - 1}:
        return node.args[0]
    return None


def _scaled(x):
    """(scores, scale, the scaling node or None) for x = scores * s or scores / s, else (x, 1, None)."""
    if isinstance(x, fx.Node) and x.target in (aten.mul.Tensor, aten.div.Tensor) and isinstance(x.args[1], (int, float)) \
            and not isinstance(x.args[1], bool) and x.args[1] != 0 and not x.kwargs:
        return x.args[0], (float(x.args[1]) if x.target is aten.mul.Tensor else 1.0 / float(x.args[1])), x
    return x, 1.0, None


def _is_scores(x) -> bool:
    scores = _scaled(x)[0]
    return isinstance(scores, fx.Node) and scores.target in RESHAPES and isinstance(scores.args[0], fx.Node) \
        and scores.args[0].target is aten.bmm.default


def _scale_and_mask(x: fx.Node):
    """(scores node, scale, mask, nodes in between) for softmax input `x` = scores * s (+ mask),
    each node in between read only by the next, else None."""
    between, mask = [], None
    if x.target is aten.add.Tensor and not x.kwargs:
        a, b = x.args[:2]
        pick = next(((s, o) for s, o in ((a, b), (b, a)) if isinstance(o, fx.Node) and _is_scores(s)), None)
        if pick is None:
            return None
        between.append(x)
        x, mask = pick
    scores, scale, scaling = _scaled(x)
    if scaling is not None:
        between.append(scaling)
    if any(_only_reader(n) is None for n in between):
        return None
    return scores, scale, mask, between


def _fuse(gm: fx.GraphModule, softmax: fx.Node) -> int:
    dim = softmax.args[1]
    shape = _shape(softmax)
    if shape is None or len(softmax.args) > 2 and softmax.args[2] not in (False, None) or dim not in (-1, len(shape) - 1):
        return 0
    found = _scale_and_mask(softmax.args[0])
    if found is None or _only_reader(softmax) is None:
        return 0
    scores, scale, mask, _ = found
    if scores.target not in RESHAPES or _only_reader(scores) is None:
        return 0
    qk = scores.args[0]
    if not isinstance(qk, fx.Node) or qk.target is not aten.bmm.default or _only_reader(qk) is None:
        return 0
    q, kt = _unfolded(qk.args[0]), _unfolded(qk.args[1])
    k = _untransposed(kt)
    p3, expanded = _only_reader(softmax), None
    if p3.target is aten.expand.default and _shape(p3) == shape:  # what matmul puts before folding
        p3, expanded = _only_reader(p3), p3
    if q is None or k is None or p3 is None or p3.target not in RESHAPES or _only_reader(p3) is None:
        return 0
    pv = _only_reader(p3)
    if pv.target is not aten.bmm.default or pv.args[0] is not p3 or _only_reader(pv) is None:
        return 0
    v, out = _unfolded(pv.args[1]), _only_reader(pv)
    if v is None or out.target not in RESHAPES:
        return 0
    lead = shape[:-2]
    if not (_shape(q)[:-2] == _shape(k)[:-2] == _shape(v)[:-2] == lead and _shape(out) == (*lead, shape[-2], _shape(v)[-1])):
        return 0
    dtypes = {node_type(n).dtype for n in (q, k, v, *([mask] if mask is not None else []))}
    if len(dtypes) != 1:  # SDPA takes a mask of the query's dtype (or bool), and one dtype for q, k, v
        return 0
    with gm.graph.inserting_before(out):
        new = gm.graph.call_function(SDPA, (q, k, v, mask, 0.0, False), {"scale": scale})
    new.name = f"{softmax.name}_sdpa"
    _set_meta(new, out)
    result = new
    if _needs_contiguous(out):
        with gm.graph.inserting_after(new):
            result = gm.graph.call_function(aten.clone.default, (new,), {"memory_format": torch.contiguous_format})
        result.name = f"{new.name}_contiguous"
        result.meta.update({k: out.meta[k] for k in ("val", "type") if k in out.meta})
    for key in ("nn_module_stack", "stack_trace", "source_fn_stack"):
        if key in softmax.meta:
            new.meta[key] = softmax.meta[key]
    out.replace_all_uses_with(result)
    for n in (out, pv, p3, expanded, softmax, *reversed(found[3]), scores, qk):
        if isinstance(n, fx.Node) and not n.users:
            gm.graph.erase_node(n)
    if result is new:
        _repropagate_views(new)
    return 1


def _needs_contiguous(out: fx.Node) -> bool:
    """Whether something reads the attention's output through a view that needs it contiguous."""
    todo = list(out.users)
    while todo:
        u = todo.pop()
        if u.target in RESHAPES or u.op == "output":
            return True
        if u.target in STRIDED_VIEWS:
            todo += list(u.users)
    return False


def _set_meta(new: fx.Node, out: fx.Node) -> None:
    """The SDPA node's type (that of the output it replaces) and, where the graph has example
    values, its value as SDPA's own kernel lays it out."""
    if "type" in out.meta:
        new.meta["type"] = out.meta["type"]
    val = out.meta.get("val")
    if val is not None:
        new.meta["val"] = val
    mode = getattr(val, "fake_mode", None)
    args = [a.meta.get("val") if isinstance(a, fx.Node) else a for a in new.args]
    if mode is None or any(a is None for a, n in zip(args, new.args) if isinstance(n, fx.Node)):
        return
    try:
        with mode:
            new.meta["val"] = SDPA(*args, **new.kwargs)
    except Exception:  # noqa: BLE001 - keep the replaced output's value: the shape is the same
        pass


def _repropagate_views(node: fx.Node) -> None:
    """Example values of the strided views reading `node` again, from its new value."""
    val = node.meta.get("val")
    mode = getattr(val, "fake_mode", None)
    if mode is None:
        return
    for u in list(node.users):
        if u.target not in STRIDED_VIEWS:
            continue
        args = [a.meta.get("val") if isinstance(a, fx.Node) else a for a in u.args]
        try:
            with mode:
                u.meta["val"] = u.target(*args, **u.kwargs)
        except Exception:  # noqa: BLE001 - keep the old value
            continue
        _repropagate_views(u)
