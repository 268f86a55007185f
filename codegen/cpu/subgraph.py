"""Stage 00-fx: a planned kernel's ops as a standalone FX graph, what torch-mlir imports: one
placeholder per kernel input, the ops copied, a tuple of the kernel's outputs, and an example
value (`val`, which torch-mlir reads types from) on every node."""
from __future__ import annotations

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import _extract_tensor_metadata

from ..aten_kernel import ops_module


def kernel_graph(kernel) -> fx.GraphModule:
    """`ops_module(kernel)` with example values on every node."""
    gm = ops_module(kernel)
    sources = list(kernel.inputs) + list(kernel.nodes)
    for node, copy in zip(sources, [n for n in gm.graph.nodes if n.op != "output"]):
        copy.meta = {k: v for k, v in node.meta.items() if k in ("val", "tensor_meta")}
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
