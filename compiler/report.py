"""What fastc did to each graph it compiled: a record kept per process, printed by `fastc explain`."""
from __future__ import annotations

import json
import operator
from collections import Counter
from dataclasses import asdict, dataclass, field

import torch.fx as fx

from fastc.costmodel.measured import summary

from .ir.targets import target_name


@dataclass
class PassRecord:
    name: str
    rewrites: int
    nodes_after: int
    ms: float
    error: float | None = None     # output error of the graph so far (lossy passes, verify)
    exact: bool = True
    note: str | None = None        # a lossy pass left out or undone, and why


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
    variant_of: int | None = None  # the frozen graph this one stands in for when weights change
    weights_changed: str | None = None  # why calls ran the unfrozen variant, once they did
    target: str = "aten"
    kernels: list[str] = field(default_factory=list)   # the kernel plan, one line per kernel
    unplanned_ops: int = 0         # ops outside kernels that do work (not views or getitem)
    generated_kernels: list[str] = field(default_factory=list)  # kernels that run generated code
    aten_kernels: list[tuple[str, str]] = field(default_factory=list)  # planned kernels run as ATen, and why
    bytes_fused: int | str = 0     # bytes the planned kernels read and write ...
    bytes_unfused: int | str = 0   # ... and what the same ops move one by one
    #: Every timing the choices object took (MeasuredChoices, at a kernel's first call per
    #: problem): the kernel's features, the candidate ("aten" or a schedule), ms, the machine.
    measurements: list[dict] = field(default_factory=list)
    #: Kernel name -> how it runs at its latest problem ("ATen", "native, 1 thread", Triton blocks),
    #: once decided (static shapes: at compile time or at the first call).
    decisions: dict[str, str] = field(default_factory=dict)
    #: Kernel (or library call) name -> the name of its range in torch.profiler traces
    #: (`fastc::g0.k3_reduction`); the whole graph's range is `fastc::g0`.
    ranges: dict[str, str] = field(default_factory=dict)
    library_calls: list[str] = field(default_factory=list)  # nodes run by a library call (bcq_linear)
    #: FLOPs and bytes per kernel and per kind of ATen op outside kernels (fastc.ir.work; static sizes)
    work: list[dict] = field(default_factory=list)
    #: Per lossy pass that ran (lossy_search.LossyRecord): what it rewrote and left out, the
    #: metric before and after, weight bytes and speed before and after.
    lossy: list = field(default_factory=list)

    def text(self) -> str:
        lines = [f"graph {self.graph_id} ({self.kind}): {self.nodes_captured} -> {self.nodes_final} "
                 f"ops, {self.frozen_inputs} frozen inputs, compiled in {self.compile_ms:.0f} ms"]
        if self.fallback:
            lines.append(f"  FALLBACK: {self.fallback}")
        if self.variant_of is not None:
            lines.append(f"  compiled without frozen weights for graph {self.variant_of}, whose weights changed")
        if self.weights_changed:
            lines.append(f"  weights changed ({self.weights_changed}): calls with other weights run graph "
                         "compiled without frozen weights")
        for p in self.passes:
            line = f"  {p.name:<16} {p.rewrites:>5} rewrites  {p.nodes_after:>5} ops after  {p.ms:7.1f} ms"
            if p.error is not None:
                line += f"  error {p.error:.3g}"
            if not p.exact:
                line += "  (lossy)"
            if p.note:
                line += f"  {p.note}"
            lines.append(line)
        for record in self.lossy:
            lines += ["  " + line for line in record.text().splitlines()]
        top = sorted(self.ops_final.items(), key=lambda kv: (-kv[1], kv[0]))
        lines.append("  ops: " + ", ".join(f"{k} x{v}" for k, v in top))
        if self.kernels:
            fused, unfused = (f"{b:,}" if isinstance(b, int) else b for b in (self.bytes_fused, self.bytes_unfused))
            lines.append(f"  kernel plan: {len(self.kernels)} kernels moving {fused} B; "
                         f"the same ops one by one move {unfused} B")
            lines += [f"    {k}" for k in self.kernels]
        if self.target != "aten":
            lines.append(f"  target {self.target}: {len(self.generated_kernels)} generated kernels, "
                         f"{len(self.aten_kernels)} planned kernels run as ATen")
            lines += [f"    ATen: {name}: {reason}" for name, reason in self.aten_kernels]
            lines += [f"    measured {line}" for line in summary(self.measurements)]
        return "\n".join(lines)

    def json(self) -> str:
        return json.dumps(asdict(self), indent=2)


REPORTS: list[GraphReport] = []


def record_plan(report: GraphReport, gm: fx.GraphModule):
    from .ir.kernel_plan import KernelPlan
    plan = KernelPlan.of(gm)
    report.kernels = [k.text() for k in plan.kernels]
    from .ir.op_facts import VIEW_OPS
    report.unplanned_ops = sum(1 for n in gm.graph.nodes if n.op == "call_function" and "kernel" not in n.meta
                               and n.target not in VIEW_OPS and n.target is not operator.getitem)
    fused = sum((k.bytes_read() + k.bytes_written() for k in plan.kernels), 0)
    unfused = sum((k.unfused_bytes() for k in plan.kernels), 0)
    report.bytes_fused = fused if isinstance(fused, int) else str(fused)
    report.bytes_unfused = unfused if isinstance(unfused, int) else str(unfused)
    from .ir.work import graph_work
    report.work = graph_work(gm)


def count_ops(gm: fx.GraphModule) -> int:
    return sum(1 for n in gm.graph.nodes if n.op == "call_function")


def op_histogram(gm: fx.GraphModule) -> dict[str, int]:
    return dict(Counter(target_name(n.target) for n in gm.graph.nodes if n.op == "call_function"))
