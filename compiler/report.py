"""What fastc did to each graph it compiled: a record kept per process, printed by `fastc explain`."""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field

import torch.fx as fx

from .ir.targets import target_name


@dataclass
class PassRecord:
    name: str
    rewrites: int
    nodes_after: int
    ms: float


@dataclass
class GraphReport:
    graph_id: int
    kind: str                      # "inference", "forward" or "backward"
    nodes_captured: int = 0
    nodes_final: int = 0
    frozen_inputs: int = 0
    passes: list[PassRecord] = field(default_factory=list)
    ops_final: dict[str, int] = field(default_factory=dict)
    compile_ms: float = 0.0
    fallback: str | None = None    # why the graph runs as captured, if it does

    def text(self) -> str:
        lines = [f"graph {self.graph_id} ({self.kind}): {self.nodes_captured} -> {self.nodes_final} "
                 f"ops, {self.frozen_inputs} frozen inputs, compiled in {self.compile_ms:.0f} ms"]
        if self.fallback:
            lines.append(f"  FALLBACK: {self.fallback}")
        for p in self.passes:
            lines.append(f"  {p.name:<16} {p.rewrites:>5} rewrites  {p.nodes_after:>5} ops after  {p.ms:7.1f} ms")
        top = sorted(self.ops_final.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("  ops: " + ", ".join(f"{k} x{v}" for k, v in top))
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps(asdict(self), indent=2)


REPORTS: list[GraphReport] = []


def count_ops(gm: fx.GraphModule) -> int:
    return sum(1 for n in gm.graph.nodes if n.op == "call_function")


def op_histogram(gm: fx.GraphModule) -> dict[str, int]:
    return dict(Counter(target_name(n.target) for n in gm.graph.nodes if n.op == "call_function"))
