"""A planned kernel's ops as a standalone FX graph: one placeholder per kernel input (with the
input's `val` metadata, which is what torch-mlir reads types from), the ops copied, and a tuple of
the kernel's outputs."""
from __future__ import annotations

import torch
import torch.fx as fx
from torch.fx.passes.shape_prop import _extract_tensor_metadata


def ops_module(kernel) -> fx.GraphModule:
    """The kernel's ops as a callable: inputs in kernel-input order -> tuple of outputs."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {n: graph.placeholder(f"in{i}") for i, n in enumerate(kernel.inputs)}
    for node in kernel.nodes:
        env[node] = graph.node_copy(node, lambda n: env[n])
    graph.output(tuple(env[n] for n in kernel.outputs))
    return fx.GraphModule({}, graph)


def kernel_graph(kernel) -> fx.GraphModule:
    """`ops_module` with example values on every node (torch-mlir's importer reads types there)."""
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
