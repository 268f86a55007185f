"""Running a planned graph: unmarked ops as ATen calls, each planned kernel as generated code.

`compile_planned(gm, target)` lowers every kernel of `gm`'s plan. A kernel that raises
Unsupported, or whose generated code fails on its first call, runs as its ATen ops instead, with
the reason recorded in `info.fallbacks`; no model fails because of code generation.
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from dataclasses import dataclass, field

import torch.fx as fx

from fastc.ir.kernel_plan import KernelPlan

from .errors import Unsupported

log = logging.getLogger("fastc")

TARGETS = ("triton-interpret", "triton", "cpu")


@dataclass
class CompileInfo:
    target: str
    kernels: list[str] = field(default_factory=list)            # generated kernels, by name
    sources: dict[str, str] = field(default_factory=dict)       # kernel name -> Triton source
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (kernel name, reason)
    tuner: object = None                                         # the Autotuner, with max-autotune
    chooser: object = None                                       # cpu: ATen or native, measured

    def text(self) -> str:
        lines = [f"{len(self.kernels)} generated kernels ({self.target}), {len(self.fallbacks)} run as ATen"]
        lines += [f"  {name}: ATen ({reason})" for name, reason in self.fallbacks]
        if self.chooser is not None:
            lines += [f"  measured {line}" for line in self.chooser.choice_text()]
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


def compile_planned(gm: fx.GraphModule, target: str = "triton-interpret", *, options: dict | None = None,
                    strict: bool = False, autotune: bool = False, choose: str = "measure"):
    """(callable(*args) -> graph outputs, CompileInfo) for planned graph `gm`.

    `target`: "triton", "triton-interpret" or "cpu" (native code through torch-mlir and LLVM).
    `choose` (cpu): "measure" runs each kernel as ATen or generated code, whichever measures
    faster at its first call; "generated" always runs the generated code.

    `strict`: a kernel whose lowering or first run fails with anything but Unsupported (a bug in
    code generation, not a missing feature) raises instead of running as ATen.
    `autotune`: measure candidate schedules per kernel and problem size (mode="max-autotune").
    """
    if target == "cpu":
        return _compile_native(gm, strict=strict, autotune=autotune, choose=choose)
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
        except Exception as e:  # noqa: BLE001 - a lowering bug must not fail a model
            if strict:
                raise
            info.fallbacks.append((k.name, f"lowering failed: {type(e).__name__}: {e}"))
            continue
        generated[k.id] = g
        info.kernels.append(g.name)
        info.sources[g.name] = g.source
    runner = _Runner(gm, plan, generated, info, strict)
    if autotune:
        from .autotune import Autotuner
        runner.tuner = info.tuner = Autotuner()
    return runner, info


def _compile_native(gm, *, strict: bool, autotune: bool, choose: str):
    if choose not in CHOICES:
        raise ValueError(f"unknown kernel choice {choose!r} (valid: {', '.join(CHOICES)})")
    info = CompileInfo("cpu")
    plan = KernelPlan.of(gm)
    try:
        from .cpu import compile_kernels
        from .root_logging import root_logging_untouched
        with root_logging_untouched():
            generated, failed = compile_kernels(plan.kernels)
    except Exception as e:  # noqa: BLE001 - no native compiler (say, torch-mlir missing): ATen
        if strict:
            raise
        generated, failed = {}, [(k.name, f"native compiler unavailable: {type(e).__name__}: {e}")
                                 for k in plan.kernels]
    info.fallbacks.extend(failed)
    info.kernels.extend(g.name for g in generated.values())
    info.sources.update({g.name: getattr(g, "source", "") for g in generated.values()})
    runner = _Runner(gm, plan, generated, info, strict)
    if choose == "measure" or autotune:
        from .choose import Chooser
        from .triton.spec import graph_bindings
        runner.chooser = info.chooser = Chooser(autotune=autotune, dynamic=bool(graph_bindings(gm)))
    return runner, info


CHOICES = ("measure", "generated")


class _Runner:
    """The planned graph as Python code: FX regenerates the graph with each kernel replaced by one
    call (a `_KernelCall`) and its outputs unpacked, in a dependency order of graph nodes and
    whole kernels. The generated code calls ATen ops directly and drops each value after its last
    use (so peak memory stays near eager's); no per-op interpretation happens at run time."""

    tuner = None
    chooser = None

    def __init__(self, gm, plan, generated, info, strict: bool = False):
        self.gm, self.generated, self.info, self.strict = gm, generated, info, strict
        self.steps = _steps(gm, plan)
        needed = {s for g in generated.values() for s in g.needs_symbols}
        from .triton.spec import graph_bindings
        self.symbols = {s: b for s, b in graph_bindings(gm).items() if s in needed}
        # Per-call state lives in the calling thread: one compiled model may run in several
        # threads at once, each with its own sizes.
        self._call_state = threading.local()
        self.lock = threading.RLock()   # guards first calls (measuring, settling, demotion)
        self.calls = {k.id: _KernelCall(self, k) for k in plan.kernels}
        self.module = _call_graph(gm, self.steps, self.calls)
        self.code = self.module.forward  # not nn.Module.__call__: no hooks to run

    @property
    def sizes(self) -> dict:
        """The size symbols of the call running in this thread."""
        return getattr(self._call_state, "sizes", {})

    def __call__(self, *args):
        if self.symbols:
            state = self._call_state
            outer = getattr(state, "sizes", None)  # a re-entrant call (a model calling itself)
            state.sizes = {s: (args[i].shape[d] if d is not None else args[i])
                           for s, (i, d) in self.symbols.items()}
            try:
                return self.code(*args)
            finally:
                state.sizes = outer
        return self.code(*args)


class _KernelCall:
    """One kernel in the generated code: its generated code (through the chooser or autotuner
    when there is one), or its ATen ops when it has none. A kernel whose generated code fails on
    its first call runs as ATen from then on (unless strict), with the reason recorded."""

    def __init__(self, runner: _Runner, kernel):
        self.runner, self.kernel = runner, kernel
        self.__name__ = kernel.name
        self.tried = False
        self._aten = None
        self._fast = None   # once settled (static sizes): the winner, called directly

    def aten(self, inputs):
        """The kernel's outputs from its ATen ops, through FX-generated Python (no interpretation)."""
        if self._aten is None:
            from .cpu.subgraph import ops_module
            self._aten = ops_module(self.kernel).forward  # not nn.Module.__call__: no hooks
        return self._aten(*inputs)

    def __call__(self, *inputs):
        if self._fast is not None:
            try:
                return self._fast(*inputs)
            except Unsupported:
                return self.aten(inputs)  # inputs in a layout this kernel cannot take
        r, kernel = self.runner, self.kernel
        g = r.generated.get(kernel.id)
        if g is None:
            return self.aten(inputs)
        if not self.tried:
            with r.lock:  # one thread measures and settles; the others wait for its choice
                return self._first_call(g, inputs)
        return self._call(g, inputs)

    def _first_call(self, g, inputs):
        if self._fast is not None or self.runner.generated.get(self.kernel.id) is not g:
            return self(*inputs)  # another thread settled or demoted this kernel meanwhile
        return self._call(g, inputs)

    def _call(self, g, inputs):
        r, kernel = self.runner, self.kernel
        try:
            if r.chooser is not None:
                values = r.chooser.run(g, inputs, r.sizes, lambda: self.aten(inputs))
            elif r.tuner is not None:
                values = r.tuner.run(g, inputs, r.sizes)
            else:
                values = g.run(*inputs, symbols=r.sizes)
        except Unsupported:
            return self.aten(inputs)  # these sizes only (say, empty rows)
        except Exception as e:  # noqa: BLE001 - first call only: generated code must not fail a model
            if self.tried or r.strict:
                raise
            r.generated.pop(kernel.id, None)
            if g.name in r.info.kernels:
                r.info.kernels.remove(g.name)
            reason = f"generated kernel failed: {type(e).__name__}: {e}"
            r.info.fallbacks.append((kernel.name, reason))
            log.warning("fastc: kernel %s runs as ATen from now on (%s)", kernel.name, reason)
            return self.aten(inputs)
        self.tried = True
        self._settle(g)
        return values

    def _settle(self, g):
        """With static sizes and the choice made, later calls skip the chooser and the checks."""
        r = self.runner
        if r.symbols or r.tuner is not None or not hasattr(g, "bound"):
            return
        if r.chooser is None:
            self._fast = g.bound()
            return
        choice = r.chooser.best.get((g.name, None), None) if not r.chooser.dynamic else None
        if choice is None:
            return
        if choice == "aten":
            from .cpu.subgraph import ops_module
            self._fast = self._aten or ops_module(self.kernel).forward
        else:
            self._fast = g.bound(choice)


def _call_graph(gm, steps, calls) -> fx.GraphModule:
    """`gm` with each kernel's ops replaced by one call of `calls[kernel.id]`, in `steps` order."""
    import operator
    graph = fx.Graph()
    env: dict = {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            env[n] = graph.node_copy(n, lambda a: env[a])
    for step in steps:
        if isinstance(step, fx.Node):
            env[step] = graph.node_copy(step, lambda a: env[a])
            continue
        call = graph.call_function(calls[step.id], tuple(env[a] for a in step.inputs))
        call.name = step.name
        for i, out in enumerate(step.outputs):
            env[out] = graph.call_function(operator.getitem, (call, i))
    output = next(n for n in gm.graph.nodes if n.op == "output")
    graph.output(fx.node.map_arg(output.args[0], lambda a: env[a]))
    return fx.GraphModule(gm, graph)


def _steps(gm, plan):
    """Graph nodes and kernels in a dependency order (kernels are convex, so one exists):
    Kahn's algorithm, taking ready steps in graph order."""
    import heapq
    unit = {n: k for k in plan.kernels for n in k.nodes}
    nodes = [n for n in gm.graph.nodes if n.op not in ("placeholder", "output")]
    position, units = {}, {}
    for i, n in enumerate(nodes):
        u = unit.get(n, n)
        if id(u) not in units:
            units[id(u)] = u
            position[id(u)] = i
    needs = {k: set() for k in units}
    users = {k: set() for k in units}
    for n in nodes:
        u = id(unit.get(n, n))
        for a in n.all_input_nodes:
            if a.op == "placeholder":
                continue
            src = id(unit.get(a, a))
            if src != u:
                needs[u].add(src)
                users[src].add(u)
    ready = [(position[k], k) for k in units if not needs[k]]
    heapq.heapify(ready)
    order = []
    while ready:
        _, k = heapq.heappop(ready)
        order.append(units[k])
        for user in users[k]:
            needs[user].discard(k)
            if not needs[user]:
                heapq.heappush(ready, (position[user], user))
    if len(order) != len(units):
        stuck = [getattr(units[k], "name", str(units[k])) for k in units if needs[k]]
        raise ValueError(f"kernel plan has a cycle between kernels: {', '.join(stuck)}")
    return order
