"""Debug dumps (FASTC_DEBUG=<dir> or the debug_dir option): each graph, after each stage, as text.

    <dir>/graph_003_inference/00-captured.fx
    <dir>/graph_003_inference/01-remove-noops.fx
    ...
    <dir>/graph_003_inference/constants.safetensors   (what `const @name` refers to)
    <dir>/graph_003_inference/report.json

A dump never changes what runs: a directory that cannot be written (a file, read-only) is
reported once with a warning and the graph compiles without its dump. Folders of an earlier
process (`graph_*` folders holding a `00-captured.fx`) are removed the first time this process writes to
a root, so a reused directory never mixes in another model's files.
"""
from __future__ import annotations

import logging
import os
import shutil

import torch
import torch.fx as fx
from safetensors.torch import save_file

from .ir.printer import print_graph

log = logging.getLogger("fastc")

# Weights above this many bytes are not written: a dump of a large model stays small.
MAX_CONSTANT_BYTES = 256 << 20


MARKER = "00-captured.fx"   # what every graph folder fastc writes holds first
_ROOTS_IN_USE: set[str] = set()     # roots this process has cleaned of earlier processes' folders
_WARNED: set[str] = set()


class DebugDump:
    def __init__(self, root: str | None, graph_id: int, kind: str):
        self.dir = None if not root else os.path.join(root, f"graph_{graph_id:03d}_{kind}")
        self.step = 0
        if self.dir:
            self._guarded(self._start, root)
            if self.dir:
                log.info("fastc debug dump for graph %d (%s) in %s", graph_id, kind, self.dir)

    def _start(self, root: str):
        if os.path.abspath(root) not in _ROOTS_IN_USE:
            _remove_earlier_dumps(root)
            _ROOTS_IN_USE.add(os.path.abspath(root))
        os.makedirs(self.dir, exist_ok=True)

    def _guarded(self, write, *args):
        """Runs one write; on an OSError warns once per root and stops dumping this graph."""
        try:
            write(*args)
        except OSError as e:
            root = os.path.dirname(self.dir)
            if root not in _WARNED:
                _WARNED.add(root)
                log.warning("fastc: cannot write the debug dump in %r (%s); compiling without it", root, e)
            self.dir = None

    def graph(self, label: str, gm: fx.GraphModule):
        if not self.dir:
            return
        path = os.path.join(self.dir, f"{self.step:02d}-{label}.fx")
        self.step += 1
        self._guarded(_write, path, print_graph(gm))

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
            self._guarded(save_file, tensors, os.path.join(self.dir, "constants.safetensors"))

    def text(self, name: str, text: str):
        if self.dir:
            self._guarded(_write, os.path.join(self.dir, name), text)


def _write(path: str, text: str):
    with open(path, "w") as f:
        f.write(text)


def _remove_earlier_dumps(root: str):
    """Removes the graph folders an earlier process dumped into `root`."""
    if not os.path.isdir(root):
        return
    for name in os.listdir(root):
        folder = os.path.join(root, name)
        if name.startswith("graph_") and os.path.isfile(os.path.join(folder, MARKER)):
            shutil.rmtree(folder, ignore_errors=True)
