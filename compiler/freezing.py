"""Freezing (inference only): parameters and buffers (inputs Dynamo marks as static module
state) become constants of the graph, so passes can rewrite weights (fold BatchNorm into the
convolution before it). Each call checks that its weights are the ones frozen
(frozen_weights.py); calls with other weights run a variant compiled without freezing.
"""
from __future__ import annotations

import logging

import torch
import torch.fx as fx

from .ir.constants import add_constant

log = logging.getLogger("fastc")


def is_module_state(x) -> bool:
    """Parameters and buffers: Dynamo marks module state as a static input."""
    return isinstance(x, torch.Tensor) and (
        isinstance(x, torch.nn.Parameter) or getattr(x, "_dynamo_static_input_type", None) is not None)


def freezable(fw_gm: fx.GraphModule, example_inputs: list, static: list[int]) -> list[int]:
    """Indices of the graph inputs that may become constants: module state that the graph
    neither mutates nor returns (an alias of it must stay the caller's tensor)."""
    placeholders = [n for n in fw_gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(example_inputs):
        log.debug("fastc: not freezing: %d graph inputs for %d example inputs",
                  len(placeholders), len(example_inputs))
        return []
    ctx = torch._guards.TracingContext.try_get()
    meta = ctx.fw_metadata if ctx is not None else None
    if meta is None:
        return []
    mutated = {i for i, info in enumerate(meta.input_info) if info.mutates_data or info.mutates_metadata}
    aliased = {o.base_idx for o in meta.output_info if o.base_idx is not None}
    return [i for i in static if i not in mutated and i not in aliased]


def freeze(gm: fx.GraphModule, example_inputs: list, frozen: list[int]):
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i in frozen:
        node = placeholders[i]
        const = add_constant(gm, example_inputs[i], hint=node.name)
        node.replace_all_uses_with(const)
        gm.graph.erase_node(node)
    gm.recompile()
