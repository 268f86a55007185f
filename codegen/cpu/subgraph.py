"""Stage 00-fx: a planned kernel's ops as a standalone FX graph, what torch-mlir imports: one
placeholder per kernel input, the ops copied, a tuple of the kernel's outputs, and an example
value (`val`, which torch-mlir reads types from) on every node.

A kernel of elementwise ops only, over tensors that all have one contiguous N-D shape (0-d
tensors and scalars aside), runs flat (`flat_numel`): its graph takes and returns those tensors
as 1-D of numel elements, so linalg makes one loop over all of them, which LLVM vectorizes,
instead of a loop nest vectorized over the innermost dimension only (a 4-D gelu with 8-long
rows: 15x slower). The caller passes the N-D tensors described as 1-D (params.py: Param.flat):
no copy, no view."""
from __future__ import annotations

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from ..aten_kernel import ops_module


def kernel_graph(kernel) -> fx.GraphModule:
    """`ops_module(kernel)` with example values on every node; over 1-D tensors of numel
    elements where the kernel runs flat (`flat_numel`)."""
    gm = ops_module(kernel)
    sources = list(kernel.inputs) + list(kernel.nodes)
    numel = flat_numel(kernel)
    if numel is not None:  # the stage dump says so (stages.py)
        shape = tuple(example_value(kernel.outputs[0]).shape)
        gm.meta["note"] = f"runs flat: its {shape} tensors as 1-D of {numel} elements"
        # Fake tensors, as a captured graph has: what passes after this stage compute their new
        # nodes' values from (stage 01), and what torch-mlir reads a type from without tensor_meta.
        fake = FakeTensorMode()
    for node, copy in zip(sources, [n for n in gm.graph.nodes if n.op != "output"]):
        copy.meta = {k: v for k, v in node.meta.items() if k in ("val", "tensor_meta")}
        if numel is not None:
            value = example_value(node)
            if isinstance(value, torch.Tensor):  # every tensor has the kernel's shape or is 0-d
                with fake:
                    value = torch.empty((numel,) if value.dim() else (), dtype=value.dtype)
                copy.meta = {"val": value, "tensor_meta": _extract_tensor_metadata(value)}
            continue
        if "val" in copy.meta:
            continue
        if copy.op == "placeholder":
            value = example_value(node)
        else:  # a graph parsed from text: run the op on meta tensors
            args, kwargs = fx.node.map_arg((copy.args, copy.kwargs), lambda n: n.meta["val"])
            value = copy.target(*args, **kwargs)
        copy.meta["val"] = value
        if isinstance(value, torch.Tensor):  # what torch-mlir reads a non-fake value's type from
            copy.meta["tensor_meta"] = _extract_tensor_metadata(value)
    return gm


def flat_numel(kernel) -> int | None:
    """The number of elements when `kernel` can run flat, else None: every op is elementwise
    (the op table's pointwise ops, less those that take sizes or a memory format other than
    contiguous), and every tensor it reads, makes or returns has one static shape of rank 2 or
    more, contiguous, or is 0-d (a scalar broadcast to every element). Any other broadcast,
    view, reduction or symbolic size: None (the kernel keeps its N-D loop nest)."""
    from fastc.ir.op_table import entry
    shape = None
    for n in kernel.outputs:
        value = example_value(n)
        if not isinstance(value, torch.Tensor) or value.dim() < 2:
            return None
        shape = shape or tuple(value.shape)
    if shape is None or not all(isinstance(s, int) for s in shape):
        return None
    for n in kernel.nodes:
        e = entry(n.target) if n.op == "call_function" else None
        if e is None or e.kind != "pointwise" or n.target in _SIZED:
            return None
        for a in torch.utils._pytree.tree_leaves((n.args, n.kwargs)):
            if isinstance(a, torch.memory_format) and a not in (torch.contiguous_format, torch.preserve_format):
                return None
        if any(isinstance(a, (list, tuple)) for a in [*n.args, *n.kwargs.values()]):
            return None   # sizes, dims or a list of tensors: not one value per element
    memory = {*kernel.inputs, *kernel.outputs}   # read or written by the caller: their layout counts
    for n in [*kernel.inputs, *kernel.nodes]:
        value = example_value(n)
        if isinstance(value, torch.Tensor):
            if value.dim() == 0:
                continue
            if tuple(value.shape) != shape:
                return None   # broadcast (or a different shape)
            if n in memory and not value.is_contiguous():
                return None
        elif n in kernel.nodes or value is None:
            return None   # an op whose value is no tensor (a tuple), or an input of unknown type
    numel = 1
    for s in shape:
        numel *= s
    return numel


# Pointwise ops that take sizes: their results are not one value per element of their inputs.
_SIZED = {torch.ops.aten.full.default}


def example_value(node: fx.Node):
    """`meta["val"]`, or for a constant (get_attr) a meta tensor of the constant's layout."""
    if "val" in node.meta:
        return node.meta["val"]
    if node.op == "get_attr":
        from fastc.ir.constants import constant_value
        value = constant_value(node)
        if isinstance(value, torch.Tensor):
            return torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device="meta")
        return value
    from fastc.ir import TensorType, node_type
    t = node_type(node)  # a graph parsed from text has types, not example values
    if isinstance(t, TensorType) and t.is_static:
        return torch.empty(t.shape, dtype=t.dtype, device="meta")
    return None


def size_expr(v):
    """An int, or the sympy expression of a symbolic size."""
    return v.node.expr if isinstance(v, (torch.SymInt, torch.SymFloat)) else v
