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
    _refuse_nan_blind_ops(gm)
    _spell_out_tanh_gelu(gm)
    _squeeze_dims_one_by_one(gm)
    return gm


def _refuse_nan_blind_ops(gm: fx.GraphModule) -> None:
    """torch-mlir's argmax/argmin compare with ordered predicates, so a NaN never wins where
    eager returns its position: float arg-reductions run as ATen."""
    from ..errors import Unsupported
    aten = torch.ops.aten
    for node in gm.graph.nodes:
        if node.target in (aten.argmax.default, aten.argmin.default):
            x = node.args[0].meta.get("val")
            if isinstance(x, torch.Tensor) and x.dtype.is_floating_point:
                raise Unsupported(f"{node.target.__name__.split('.')[0]} of floats (torch-mlir ignores NaN)")


def _spell_out_tanh_gelu(gm: fx.GraphModule) -> None:
    """torch-mlir (20261001) lowers gelu(approximate="tanh") with sqrt(2/pi) rounded to 0.797724
    (it is 0.7978846), an error of up to 5e-5 against eager: spell it out in ATen ops instead."""
    aten = torch.ops.aten
    for node in list(gm.graph.nodes):
        if node.target is not aten.gelu.default or node.kwargs.get("approximate", "none") != "tanh":
            continue
        x = node.args[0]
        steps = [(aten.mul.Tensor, lambda v: (x, x)), (aten.mul.Tensor, lambda v: (v[-1], x)),
                 (aten.mul.Tensor, lambda v: (v[-1], 0.044715)), (aten.add.Tensor, lambda v: (x, v[-1])),
                 (aten.mul.Tensor, lambda v: (v[-1], 0.7978845608028654)), (aten.tanh.default, lambda v: (v[-1],)),
                 (aten.add.Tensor, lambda v: (v[-1], 1.0)), (aten.mul.Tensor, lambda v: (x, 0.5)),
                 (aten.mul.Tensor, lambda v: (v[-2], v[-1]))]
        made: list[fx.Node] = []
        with gm.graph.inserting_before(node):
            for op, args in steps:
                new = gm.graph.call_function(op, args(made))
                vals = fx.node.map_arg(new.args, lambda n: n.meta["val"])
                new.meta["val"] = op(*vals)
                made.append(new)
        node.replace_all_uses_with(made[-1])
        gm.graph.erase_node(node)
    gm.recompile()


def _squeeze_dims_one_by_one(gm: fx.GraphModule) -> None:
    """torch-mlir (20261001) has no lowering for aten.squeeze.dims (logsumexp, for one): one
    aten.squeeze.dim per dim, last dim first, squeezes the same dims."""
    aten = torch.ops.aten
    changed = False
    for node in list(gm.graph.nodes):
        if node.target is not aten.squeeze.dims:
            continue
        x, dims = node.args[0], node.args[1]
        rank = x.meta["val"].dim()
        value = x
        with gm.graph.inserting_before(node):
            for d in sorted({d % max(rank, 1) for d in dims}, reverse=True):
                value = gm.graph.call_function(aten.squeeze.dim, (value, d))
                value.meta["val"] = aten.squeeze.dim(value.args[0].meta["val"], d)
        node.replace_all_uses_with(value)
        gm.graph.erase_node(node)
        changed = True
    if changed:
        gm.recompile()


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
