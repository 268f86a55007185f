"""A planned kernel's ops as a standalone FX graph: one placeholder per kernel input (with the
input's `val` metadata, which is what torch-mlir reads types from), the ops copied, and a tuple of
the kernel's outputs."""
from __future__ import annotations

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import _extract_tensor_metadata


def kernel_graph(kernel) -> fx.GraphModule:
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    for i, node in enumerate(kernel.inputs):
        p = graph.placeholder(f"in{i}")
        p.meta = {k: v for k, v in node.meta.items() if k in ("val", "tensor_meta")}
        if "val" not in p.meta:
            value = example_value(node)
            p.meta["val"] = value
            if isinstance(value, torch.Tensor):  # what torch-mlir reads a non-fake value's type from
                p.meta["tensor_meta"] = _extract_tensor_metadata(value)
        env[node] = p
    for node in kernel.nodes:
        copy = env[node] = graph.node_copy(node, lambda n: env[n])
        copy.meta = {k: v for k, v in node.meta.items() if k in ("val", "tensor_meta")}
        if "val" not in copy.meta:  # a graph parsed from text: run the op on meta tensors
            args, kwargs = fx.node.map_arg((copy.args, copy.kwargs), lambda n: n.meta["val"])
            copy.meta["val"] = value = copy.target(*args, **kwargs)
            if isinstance(value, torch.Tensor):
                copy.meta["tensor_meta"] = _extract_tensor_metadata(value)
    graph.output(tuple(env[n] for n in kernel.outputs))
    return fx.GraphModule({}, graph)


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
