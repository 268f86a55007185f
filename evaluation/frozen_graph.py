"""A model as fastc's passes see it after freezing: one inference graph of core ATen ops whose
parameters and buffers are constants, with every input dimension symbolic, so that one graph
serves every batch size.

    gm = capture(model, (x,))       # gm(x) -> (out,); constants named after the model's tensors
    same = GraphModel(gm, model)    # a module again: same(x) -> out
    weight_stats(gm)                # {"weights", "nonzero_weights", "bytes"} of its constants

The accuracy harness runs pass pipelines over such a graph through the pass manager, with
calibration inputs it chooses (torch.compile's path gets only the example inputs of its first call).
"""
from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from fastc.ir.constants import add_constant, constant_value, drop_unused_constants


def capture(model: nn.Module, example_inputs: tuple) -> fx.GraphModule:
    """The inference (eval-mode) graph of `model` on inputs shaped like `example_inputs` (any
    sizes; a size of 0 or 1 would be fixed in the graph, so trace with at least 2 of each)."""
    names = {id(t): name for name, t in [*model.named_parameters(), *model.named_buffers()]}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            gm = make_fx(lambda *inputs: (model(*inputs),), decomposition_table=core_aten_decompositions(),
                         tracing_mode="symbolic", _allow_non_fake_inputs=True)(*example_inputs)
    finally:
        model.train(was_training)
    # The tracer holds the model's tensors as `_param_constant<i>` attributes: make each a plain
    # constant (a buffer, no autograd) named after what it was in the model.
    for node in [n for n in gm.graph.nodes if n.op == "get_attr"]:
        value = constant_value(node)
        const = add_constant(gm, value.detach(), hint=names.get(id(value), node.target), before=node)
        node.replace_all_uses_with(const)
        gm.graph.erase_node(node)
    gm.graph.lint()
    gm.recompile()
    drop_unused_constants(gm)
    return gm


class GraphModel(nn.Module):
    """A captured (and perhaps rewritten) graph as a module: forward(*inputs) returns its one
    output. Keeps the original model's `cfg`, which evaluation may read (the LM's context)."""

    def __init__(self, gm: fx.GraphModule, like: nn.Module | None = None):
        super().__init__()
        self.gm = gm
        if hasattr(like, "cfg"):
            self.cfg = like.cfg

    def forward(self, *inputs):
        return self.gm(*inputs)[0]


def weight_stats(gm: fx.GraphModule) -> dict:
    """{"weights": elements of the floating-point constants the graph uses, "nonzero_weights":
    how many of those are nonzero, "bytes": bytes of all its constants}; constants that share
    storage (a folded view of a weight) count it once."""
    weights = nonzero = total_bytes = 0
    targets, storages = set(), set()
    for node in gm.graph.nodes:
        if node.op != "get_attr" or not node.users or node.target in targets:
            continue
        targets.add(node.target)
        value = constant_value(node)
        if value.is_floating_point():
            weights += value.numel()
            nonzero += int(torch.count_nonzero(value))
        storage = value.untyped_storage()
        if storage.data_ptr() not in storages:
            storages.add(storage.data_ptr())
            total_bytes += storage.nbytes()
    return {"weights": weights, "nonzero_weights": nonzero, "bytes": total_bytes}
