"""Views as index maps: the index into a view's input that a view's output index reads.

A view never moves data in a generated kernel: reading a view at an index reads its input at
the mapped index. Values are logical (row-major) here, so `view`/`reshape` of any input is the
ravel/unravel of the index, whatever the input's memory strides are.
"""
from __future__ import annotations

import sympy
import torch
import torch.fx as fx

from fastc.ir import node_type

from ..errors import Unsupported
from .indexing import Index, as_expr, broadcast, is_one, numel, ravel, same_size, split

aten = torch.ops.aten


def _shape(node):
    return node_type(node).shape


def _dim(d, rank):
    return d + rank if d < 0 else d


def _int(value, node, what):
    if isinstance(value, fx.Node) or not isinstance(value, int):
        raise Unsupported(f"{node.target}: symbolic {what} {value}")
    return value


def view_index(node: fx.Node, index: Index) -> Index:
    """The index into node.args[0] read by `node` (a view op) at `index`."""
    t, src = node.target, node.args[0]
    in_shape, out_shape = _shape(src), _shape(node)
    if t in (aten.view.default, aten._unsafe_view.default, aten.reshape.default):
        return reshape_index(index, out_shape, in_shape)
    if t in (aten.alias.default,):
        return index
    if t is aten.permute.default:
        dims = [_dim(d, len(in_shape)) for d in node.args[1]]
        out = [None] * len(in_shape)
        for k, d in enumerate(dims):
            out[d] = index[k]
        return tuple(out)
    if t in (aten.t.default, aten.transpose.int):
        a, b = (0, 1) if t is aten.t.default else (_dim(node.args[1], len(in_shape)), _dim(node.args[2], len(in_shape)))
        out = list(index)
        if len(out) >= 2:
            out[a], out[b] = out[b], out[a]
        return tuple(out)
    if t is aten.expand.default:
        return broadcast(index, out_shape, in_shape)
    if t is aten.unsqueeze.default:
        d = _dim(node.args[1], len(out_shape))
        return index[:d] + index[d + 1:]
    if t in (aten.squeeze.dim, aten.squeeze.dims, aten.squeeze.default):
        return reshape_index(index, out_shape, in_shape)
    if t is aten.slice.Tensor:
        d = _dim(node.args[1] if len(node.args) > 1 else 0, len(in_shape))
        start = node.args[2] if len(node.args) > 2 else 0
        step = _int(node.args[4] if len(node.args) > 4 else 1, node, "step")
        start = 0 if start is None else _int(start, node, "start")
        if start < 0:
            start = as_expr(in_shape[d]) + start
        out = list(index)
        out[d] = start + step * index[d]
        return tuple(out)
    if t is aten.select.int:
        d = _dim(node.args[1], len(in_shape))
        i = _int(node.args[2], node, "index")
        if i < 0:
            i = as_expr(in_shape[d]) + i
        return index[:d] + (as_expr(i),) + index[d:]
    raise Unsupported(f"view {t} in a generated kernel")


def reshape_index(index: Index, out_shape, in_shape) -> Index:
    """Index into `in_shape` for a row-major reshape to `out_shape`, group by group: dimensions
    that map one-to-one keep their index; merged or split groups ravel and unravel."""
    out_real = [k for k, d in enumerate(out_shape) if not is_one(d)]
    in_real = [k for k, d in enumerate(in_shape) if not is_one(d)]
    result = [sympy.Integer(0)] * len(in_shape)
    i = j = 0
    while i < len(out_real) or j < len(in_real):
        gi, gj = [out_real[i]] if i < len(out_real) else [], [in_real[j]] if j < len(in_real) else []
        i, j = i + len(gi), j + len(gj)
        while not same_size(numel([out_shape[k] for k in gi]), numel([in_shape[k] for k in gj])):
            a, b = numel([out_shape[k] for k in gi]), numel([in_shape[k] for k in gj])
            grow_out = i < len(out_real) and (j >= len(in_real) or _smaller(a, b))
            if grow_out:
                gi.append(out_real[i]); i += 1
            elif j < len(in_real):
                gj.append(in_real[j]); j += 1
            else:
                raise Unsupported(f"reshape {list(in_shape)} -> {list(out_shape)}: sizes do not match")
        if len(gi) == 1 and len(gj) == 1:
            result[gj[0]] = index[gi[0]]
            continue
        flat = ravel(tuple(index[k] for k in gi), [out_shape[k] for k in gi])
        for k, v in zip(gj, split(flat, [in_shape[k] for k in gj])):
            result[k] = v
    return tuple(result)


def _smaller(a, b) -> bool:
    diff = sympy.simplify(as_expr(b) / as_expr(a))
    if diff.is_number:
        return diff > 1
    return bool(sympy.fraction(sympy.together(diff))[1] == 1)  # b is a multiple of a
