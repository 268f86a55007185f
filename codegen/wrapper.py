"""Running a planned graph: unmarked ops as ATen calls, each planned kernel as generated code.

`compile_planned(gm, target)` lowers every kernel of `gm`'s plan. A kernel that raises
Unsupported, or whose generated code fails on its first call, runs as its ATen ops instead, with
the reason recorded in `info.fallbacks`; no model fails because of code generation.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field

import torch.fx as fx

from fastc.ir.constants import constant_value
from fastc.ir.kernel_plan import KernelPlan

from .errors import Unsupported

TARGETS = ("triton-interpret", "triton")


@dataclass
class CompileInfo:
    target: str
    kernels: list[str] = field(default_factory=list)            # generated kernels, by name
    sources: dict[str, str] = field(default_factory=dict)       # kernel name -> Triton source
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (kernel name, reason)

    def text(self) -> str:
        lines = [f"{len(self.kernels)} generated kernels ({self.target}), {len(self.fallbacks)} run as ATen"]
        lines += [f"  {name}: ATen ({reason})" for name, reason in self.fallbacks]
        return "\n".join(lines)


def prepare_triton(target: str) -> None:
    """Makes triton importable for `target`; the interpreter must be chosen before triton loads."""
    if target not in TARGETS:
        raise ValueError(f"unknown codegen target {target!r} (valid: {', '.join(TARGETS)})")
    if target == "triton-interpret" and os.environ.get("TRITON_INTERPRET") != "1":
        # torch itself often imports triton first; triton 3.x reads TRITON_INTERPRET when a
        # kernel is decorated, so setting it still works unless interpretation was forced off.
        already = "triton" in sys.modules
        os.environ["TRITON_INTERPRET"] = "1"
        if already and not _interpreting():
            raise RuntimeError(
                "target 'triton-interpret' needs Triton's interpreter, but triton was already imported "
                "with it off: set TRITON_INTERPRET=1 in the environment before starting Python")
    import triton  # noqa: F401


def _interpreting() -> bool:
    try:
        import triton
        return bool(triton.knobs.runtime.interpret)
    except (ImportError, AttributeError):
        return False


def compile_planned(gm: fx.GraphModule, target: str = "triton-interpret", *, options: dict | None = None):
    """(callable(*args) -> graph outputs, CompileInfo) for planned graph `gm`."""
    prepare_triton(target)
    from .triton import lower
    info = CompileInfo(target)
    plan = KernelPlan.of(gm)
    generated = {}
    for k in plan.kernels:
        try:
            g = lower(k, gm, options={"target": target, **(options or {})})
        except Unsupported as e:
            info.fallbacks.append((k.name, e.reason))
            continue
        generated[k.id] = g
        info.kernels.append(g.name)
        info.sources[g.name] = g.source
    runner = _Runner(gm, plan, generated, info)
    return runner, info


class _Runner:
    """Steps in dependency order: a graph node, or a whole kernel."""

    def __init__(self, gm, plan, generated, info):
        self.gm, self.generated, self.info = gm, generated, info
        self.tried: set[int] = set()
        self.steps = _steps(gm, plan)
        self.placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        self.output = next(n for n in gm.graph.nodes if n.op == "output")

    def __call__(self, *args):
        env = dict(zip(self.placeholders, args))
        for step in self.steps:
            if isinstance(step, fx.Node):
                env[step] = _run_node(step, env)
            else:
                self._run_kernel(step, env)
        return fx.node.map_arg(self.output.args[0], lambda n: env[n])

    def _run_kernel(self, kernel, env):
        g = self.generated.get(kernel.id)
        if g is not None:
            inputs = [env[n] for n in kernel.inputs]
            try:
                values = g.run(*inputs)
            except Unsupported:
                pass  # these sizes only (say, empty rows): this call runs as ATen
            except Exception as e:  # noqa: BLE001 - first call only: generated code must not fail a model
                if kernel.id in self.tried:
                    raise
                self.generated.pop(kernel.id)
                self.info.kernels.remove(g.name)
                self.info.fallbacks.append((kernel.name, f"generated kernel failed: {type(e).__name__}: {e}"))
            else:
                self.tried.add(kernel.id)
                env.update(zip(kernel.outputs, values))
                return
        for n in kernel.nodes:
            env[n] = _run_node(n, env)


def _run_node(node: fx.Node, env):
    if node.op == "get_attr":
        return constant_value(node)
    args, kwargs = fx.node.map_arg((node.args, node.kwargs), lambda n: env[n])
    if node.op == "call_function":
        return node.target(*args, **kwargs)
    raise NotImplementedError(f"cannot run fx node {node.format_node()} (op {node.op})")


def _steps(gm, plan):
    """Graph nodes and kernels in a dependency order (kernels are convex, so one exists)."""
    unit = {}
    for k in plan.kernels:
        for n in k.nodes:
            unit[n] = k
    order, seen = [], set()
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    deps = {}
    for n in nodes:
        u = unit.get(n, n)
        deps.setdefault(id(u), (u, set()))
        for a in n.all_input_nodes:
            if a.op != "placeholder" and unit.get(a, a) is not u:
                deps[id(u)][1].add(id(unit.get(a, a)))
    pending = list(deps)
    while pending:
        progressed = False
        for key in list(pending):
            u, needs = deps[key]
            if needs <= seen:
                order.append(u)
                seen.add(key)
                pending.remove(key)
                progressed = True
        if not progressed:
            raise ValueError("kernel plan has a cycle between kernels: "
                             + ", ".join(getattr(deps[k][0], "name", str(deps[k][0])) for k in pending))
    return order
