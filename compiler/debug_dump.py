"""Debug dumps (FASTC_DEBUG=<dir> or the debug_dir option): each graph, after each stage, as text.

    <dir>/graph_003_inference/00-captured.fx
    <dir>/graph_003_inference/01-remove-noops.fx
    ...
    <dir>/graph_003_inference/constants.safetensors   (what `const @name` refers to)
    <dir>/graph_003_inference/report.json
"""
from __future__ import annotations

import logging
import os

import torch
import torch.fx as fx
from safetensors.torch import save_file

from .ir.printer import print_graph

log = logging.getLogger("fastc")

# Weights above this many bytes are not written: a dump of a large model stays small.
MAX_CONSTANT_BYTES = 256 << 20


class DebugDump:
    def __init__(self, root: str | None, graph_id: int, kind: str):
        self.dir = None if root is None else os.path.join(root, f"graph_{graph_id:03d}_{kind}")
        self.step = 0
        if self.dir:
            os.makedirs(self.dir, exist_ok=True)
            log.info("fastc debug dump for graph %d (%s) in %s", graph_id, kind, self.dir)

    def graph(self, label: str, gm: fx.GraphModule):
        if not self.dir:
            return
        path = os.path.join(self.dir, f"{self.step:02d}-{label}.fx")
        self.step += 1
        with open(path, "w") as f:
            f.write(print_graph(gm))

    def constants(self, gm: fx.GraphModule):
        if not self.dir:
            return
        tensors = {}
        for n in gm.graph.nodes:
            if n.op == "get_attr":
                value = getattr(gm, n.target)
                if isinstance(value, torch.Tensor):
                    tensors[n.target] = value.detach().cpu().clone(memory_format=torch.contiguous_format)
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        if tensors and total <= MAX_CONSTANT_BYTES:
            save_file(tensors, os.path.join(self.dir, "constants.safetensors"))

    def text(self, name: str, text: str):
        if self.dir:
            with open(os.path.join(self.dir, name), "w") as f:
                f.write(text)
