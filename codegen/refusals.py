"""The op table's refusals as code generation's Unsupported: every code generator asks here
before lowering a kernel, so what the planner was told a target does not lower (and why) is what
that target's generator refuses."""
from __future__ import annotations

from fastc.ir.op_table import refusal

from .errors import Unsupported


def refuse_by_table(nodes, target: str) -> None:
    """Raises Unsupported, with the table's reason, for the first of `nodes` (a kernel's ops, or
    the nodes of its graph) that the op table (fastc.ir.op_table) says `target` does not lower."""
    for node in nodes:
        reason = refusal(node, target) if node.op == "call_function" else None
        if reason is not None:
            raise Unsupported(f"{node.target}: {reason}")
