"""A kernel's canonical text: what its generated code depends on (the disk cache key)."""
from __future__ import annotations

import torch.fx as fx

from fastc.ir import node_type


def kernel_text(kernel) -> str:
    def ref(a):
        return fx.node.map_arg(a, lambda n: f"%{n.name}")
    lines = [f"kernel {kernel.name} kind={kernel.kind}"]
    lines += [f"in %{n.name}: {node_type(n)} {n.meta.get('val').__class__.__name__ if 'val' in n.meta else ''}"
              for n in kernel.inputs]
    for n in kernel.nodes:
        lines.append(f"%{n.name}: {node_type(n)} = {n.target}{ref(tuple(n.args))!r} {ref(dict(n.kwargs))!r}")
    lines.append("out " + ", ".join(f"%{n.name}" for n in kernel.outputs))
    return "\n".join(lines)
