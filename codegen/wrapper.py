"""Running a planned graph: unmarked ops as ATen calls, each planned kernel as generated code.

`compile_planned(gm, target)` lowers every kernel of `gm`'s plan. A kernel that raises
Unsupported, or whose generated code fails on its first call, runs as its ATen ops instead, with
the reason recorded in `info.fallbacks`; no model fails because of code generation.

How each kernel runs (its ATen ops, or its generated code under which schedule) is the choices
object's decision (fastc.costmodel); this module only enumerates the legal candidates and keeps
the decision per kernel and problem. With static shapes the decision is made here, at compile
time, when the choices object can make it without running anything.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import threading
from dataclasses import dataclass, field

import torch
import torch.autograd.profiler as _profiler
import torch.fx as fx

from fastc.costmodel import ATEN, Choices, compile_choices, kernel_features, problem_key
from fastc.costmodel.features import candidate_text, static_shapes
from fastc.costmodel.measured import summary
from fastc.ir.kernel_plan import KernelPlan

from .errors import Unsupported
from .schedule import candidate_schedules

log = logging.getLogger("fastc")

TARGETS = ("triton-interpret", "triton", "cpu")


@dataclass
class CompileInfo:
    target: str
    kernels: list[str] = field(default_factory=list)            # generated kernels, by name
    sources: dict[str, str] = field(default_factory=dict)       # kernel name -> Triton source
    fallbacks: list[tuple[str, str]] = field(default_factory=list)  # (kernel name, reason)
    choices: Choices | None = None                               # what decides how kernels run
    decisions: dict[str, str] = field(default_factory=dict)     # kernel name -> how it runs (latest problem)
    measurements: list[dict] = field(default_factory=list)      # every timing the choices object took

    def text(self) -> str:
        lines = [f"{len(self.kernels)} generated kernels ({self.target}), {len(self.fallbacks)} run as ATen"]
        lines += [f"  {name}: ATen ({reason})" for name, reason in self.fallbacks]
        lines += [f"  measured {line}" for line in summary(self.measurements)]
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
                    strict: bool = False, autotune: bool = False, choose: str = "measure",
                    choices: Choices | None = None, debug_dir: str | None = None, label: str | None = None):
    """(callable(*args) -> graph outputs, CompileInfo) for planned graph `gm`.

    `target`: "triton", "triton-interpret" or "cpu" (native code through torch-mlir and LLVM).
    `choose` (cpu): "measure" offers each kernel's ATen ops as a candidate next to its generated
    code; "generated" always runs the generated code.
    `autotune` (mode="max-autotune"): candidates are every schedule worth measuring
    (`schedule.candidate_schedules`), not only the choices object's own and those already built.
    `choices`: what picks among the candidates (fastc.costmodel.Choices); by default the
    process-wide one, else MeasuredChoices when `choose` is "measure" on cpu or with `autotune`,
    HeuristicChoices otherwise.

    `strict`: a kernel whose lowering or first run fails with anything but Unsupported (a bug in
    code generation, not a missing feature) raises instead of running as ATen.
    `debug_dir` (cpu): every stage from a kernel to machine code is written to <debug_dir>/cpu
    (codegen/cpu/stages.py).
    `label` (say "g0", the graph's id in the reports): what names the graph's ranges in profiler
    traces (`range_name`).
    """
    if choose not in CHOICES:
        raise ValueError(f"unknown kernel choice {choose!r} (valid: {', '.join(CHOICES)})")
    choices = compile_choices(choices, target=target, kernel_choice=choose, autotune=autotune)
    if target == "cpu":
        info, plan, generated = _compile_native(gm, strict=strict, choices=choices, debug_dir=debug_dir)
    else:
        info, plan, generated = _compile_triton(gm, target, options, strict=strict)
    info.choices = choices
    runner = _Runner(gm, plan, generated, info, strict, choices=choices, autotune=autotune,
                     aten_candidate=target == "cpu" and choose == "measure",
                     library=_library_calls(gm, choices, info) if target == "cpu" else {}, label=label)
    return runner, info


def _library_calls(gm, choices, info) -> dict:
    """Library ops with implementations to choose among (library_calls.py: fastc.bcq_linear;
    product_calls.py: fastc.conv2d_act, fastc.linear_act; block_calls.py: the block ops), when the
    graph has any."""
    names = {str(n.target) for n in gm.graph.nodes if n.op == "call_function"}
    calls = {}
    if "fastc.bcq_linear.default" in names:
        from .library_calls import library_calls
        calls.update(library_calls(gm, choices, info))
    if names & {"fastc.conv2d_act.default", "fastc.linear_act.default"}:
        from .product_calls import product_calls
        calls.update(product_calls(gm, choices, info))
    if any(name.startswith("fastc.") and name.endswith("_block.default") for name in names):
        from .block_calls import block_calls
        calls.update(block_calls(gm, choices, info))
    return calls


def _compile_triton(gm, target: str, options: dict | None, *, strict: bool):
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
    return info, plan, generated


def _compile_native(gm, *, strict: bool, choices: Choices, debug_dir: str | None = None):
    info = CompileInfo("cpu")
    plan = KernelPlan.of(gm)
    try:
        from .cpu import compile_kernels
        from .root_logging import root_logging_untouched
        with root_logging_untouched():
            generated, failed = compile_kernels(plan.kernels, choices=choices,
                                                debug_dir=os.path.join(debug_dir, "cpu") if debug_dir else None)
    except Exception as e:  # noqa: BLE001 - no native compiler (say, torch-mlir missing): ATen
        if strict:
            raise
        generated, failed = {}, [(k.name, f"native compiler unavailable: {type(e).__name__}: {e}")
                                 for k in plan.kernels]
    info.fallbacks.extend(failed)
    info.kernels.extend(g.name for g in generated.values())
    info.sources.update({g.name: getattr(g, "source", "") for g in generated.values()})
    return info, plan, generated


CHOICES = ("measure", "generated")


def range_name(label: str | None, name: str | None = None) -> str:
    """The name of a range in profiler traces: `fastc::g0` for graph g0's whole run, and
    `fastc::g0.k3_reduction` for one of its kernels (or library calls, by node name)."""
    base = f"fastc::{label}" if label else "fastc::graph"
    return base if name is None else f"{base}.{name}"


_RecordFunction = getattr(getattr(torch._C, "_profiler", None), "_RecordFunctionFast", None) \
    or torch.autograd.profiler.record_function


class _Ranged:
    """`fn` inside a profiler range called `name`: what the runner calls in place of a kernel or
    a library call while a profiler runs (only then: see `_Runner.__call__`)."""

    def __init__(self, name: str, fn):
        self.range, self.fn = name, fn
        self.__name__ = getattr(fn, "__name__", "call")

    def __call__(self, *args):
        with _RecordFunction(self.range):
            return self.fn(*args)


# Decisions kept per kernel (dynamic shapes: one per problem); past this many, start over.
DECISIONS_KEPT = 256


class _Runner:
    """The planned graph as Python code: FX regenerates the graph with each kernel replaced by one
    call (a `_KernelCall`) and its outputs unpacked, in a dependency order of graph nodes and
    whole kernels. The generated code calls ATen ops directly (their C++ entry points:
    aten_kernel.DirectOp) and drops each value after its last
    use (so peak memory stays near eager's); no per-op interpretation happens at run time.

    While a profiler runs (torch.profiler, torch.autograd.profiler), calls run a second copy of
    that code in which the graph and each kernel and library call sit in a `record_function`
    range named after them (`range_name`), so traces show fastc's kernels by name; ATen ops
    outside kernels show as themselves. Without a profiler the cost is one flag check per call
    of the graph, none per kernel."""

    def __init__(self, gm, plan, generated, info, strict: bool = False, *, choices: Choices,
                 autotune: bool = False, aten_candidate: bool = False, library: dict | None = None,
                 label: str | None = None):
        self.gm, self.generated, self.info, self.strict = gm, generated, info, strict
        self.choices, self.autotune, self.aten_candidate = choices, autotune, aten_candidate
        self.steps = _steps(gm, plan)
        needed = {s for g in generated.values() for s in g.needs_symbols}
        from .graph_bindings import graph_bindings
        self.symbols = {s: b for s, b in graph_bindings(gm).items() if s in needed}
        # Per-call state lives in the calling thread: one compiled model may run in several
        # threads at once, each with its own sizes.
        self._call_state = threading.local()
        self.lock = threading.RLock()   # guards first calls (measuring, settling, demotion)
        self.calls = {k.id: _KernelCall(self, k) for k in plan.kernels}
        self.library = library or {}
        self.module = _call_graph(gm, self.steps, self.calls, self.library)
        self.code = self.module.forward  # not nn.Module.__call__: no hooks to run
        self.label = label
        self._ranged = None   # the code with profiler ranges, made at the first profiled call

    def ranged_code(self):
        """The graph's code with each kernel and library call in a named profiler range, and the
        whole call in one named after the graph."""
        if self._ranged is None:
            with self.lock:
                if self._ranged is None:
                    calls = {kid: _Ranged(range_name(self.label, c.kernel.name), c) for kid, c in self.calls.items()}
                    library = {n: _Ranged(range_name(self.label, n.name), fn) for n, fn in self.library.items()}
                    inner = _call_graph(self.gm, self.steps, calls, library).forward
                    whole = range_name(self.label)

                    def ranged(*args):
                        with _RecordFunction(whole):
                            return inner(*args)
                    self._ranged = ranged
        return self._ranged

    def range_names(self) -> dict[str, str]:
        """Kernel or library node name -> its range name in profiler traces."""
        names = [c.kernel.name for c in self.calls.values()] + [n.name for n in self.library]
        return {name: range_name(self.label, name) for name in names}

    @property
    def sizes(self) -> dict:
        """The size symbols of the call running in this thread."""
        return getattr(self._call_state, "sizes", {})

    def __call__(self, *args):
        code = self.ranged_code() if _profiler._is_profiler_enabled else self.code
        if self.symbols:
            state = self._call_state
            outer = getattr(state, "sizes", None)  # a re-entrant call (a model calling itself)
            state.sizes = {s: (args[i].shape[d] if d is not None else args[i])
                           for s, (i, d) in self.symbols.items()}
            try:
                return code(*args)
            finally:
                state.sizes = outer
        return code(*args)


class _KernelCall:
    """One kernel in the generated code: its generated code under the schedule the choices object
    picks, or its ATen ops when it picks those (or when there is no generated code). One pick per
    problem: made at compile time for static shapes where the choices object can, else at the
    first call of each problem (measured, with MeasuredChoices). A kernel whose generated code
    fails on its first call runs as ATen from then on (unless strict), with the reason recorded."""

    def __init__(self, runner: _Runner, kernel):
        self.runner, self.kernel = runner, kernel
        self.__name__ = kernel.name
        self.tried = False
        self._aten = None
        self._fast = None   # once settled (static sizes): the winner, called directly
        self.static = static_shapes(kernel)   # one problem: decided once, under the key None
        self.decided: dict = {}               # problem -> ATEN or a Schedule
        self._features = None
        g = runner.generated.get(kernel.id)
        if g is not None and self.static:
            self._decide_at_compile_time(g)

    def aten(self, inputs):
        """The kernel's outputs from its ATen ops, through FX-generated Python (no interpretation)."""
        if self._aten is None:
            from .aten_kernel import direct_calls, ops_module
            self._aten = direct_calls(ops_module(self.kernel)).forward  # not nn.Module.__call__: no hooks
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
            choice = self._choice(g, inputs)
            values = self.aten(inputs) if choice == ATEN else g.run(*inputs, schedule=choice, symbols=r.sizes)
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

    # -- choosing -------------------------------------------------------------------------------
    def _decide_at_compile_time(self, g):
        """Static shapes: the choices object decides now if it can without running the kernel."""
        try:
            sizes = g.problem_sizes()
        except (Unsupported, ValueError):  # sizes known only from the inputs (data-dependent)
            return
        k = self._features_at(sizes)
        candidates = self._candidates(g, k)
        choice = self.runner.choices.choose(k, candidates)
        if choice is not None:
            self._keep(None, self._legal(choice, candidates))

    def _choice(self, g, inputs):
        """ATEN or the Schedule to run at this problem: decided once per problem."""
        key = None if self.static else problem_key(inputs)
        choice = self.decided.get(key)
        if choice is None:
            with self.runner.lock:  # one decision (and measurement) per problem, whichever thread asks
                choice = self.decided.get(key)
                if choice is None:
                    choice = self._decide(g, inputs)
                    self._keep(key, choice)
        return choice

    def _decide(self, g, inputs):
        r = self.runner
        k = self._features_at(g.problem_sizes(*inputs, symbols=r.sizes), inputs)
        if hasattr(g, "candidate_features"):  # the cost model's features of each candidate's MLIR
            k = dataclasses.replace(k, describe=functools.partial(g.candidate_features, k=k))
        candidates = self._candidates(g, k)

        def run(candidate):
            if candidate == ATEN:
                return self.aten(inputs)
            return g.run(*inputs, schedule=candidate, symbols=r.sizes)
        return self._legal(r.choices.choose(k, candidates, run, r.info.measurements), candidates)

    def _candidates(self, g, k) -> list:
        """The legal ways to run this kernel at problem `k`: its ATen ops (when compared with
        generated code), then its generated code under the choices object's schedule and under
        every schedule worth measuring (max-autotune) or else those already built."""
        r = self.runner
        schedules = [r.choices.schedule(k)]
        if r.autotune or getattr(r.choices, "ranks_every_schedule", False):  # a cost model ranks them all
            schedules += candidate_schedules(g.kind, k.sizes, r.info.target)
        elif r.info.target == "cpu":
            schedules += g.schedules
        return ([ATEN] if r.aten_candidate else []) + list(dict.fromkeys(schedules))

    def _legal(self, choice, candidates):
        if choice is not None and choice in candidates:
            return choice
        fallback = next(c for c in candidates if c != ATEN)
        log.warning("fastc: kernel %s: the choices object %r picked %r, not one of its candidates; "
                    "running %s", self.kernel.name, self.runner.choices, choice, candidate_text(fallback))
        return fallback

    def _features_at(self, sizes, inputs=None):
        if self._features is None:
            self._features = kernel_features(self.kernel, self.runner.info.target)
        return self._features.at(sizes, inputs, self.kernel)

    def _keep(self, key, choice):
        if len(self.decided) >= DECISIONS_KEPT:
            self.decided = {}  # many sizes (dynamic shapes): start over, not grow forever
        self.decided[key] = choice
        self.runner.info.decisions[self.kernel.name] = candidate_text(choice)

    def _settle(self, g):
        """With static sizes and the choice made, later calls skip the choice and the checks."""
        choice = self.decided.get(None)
        if not self.static or choice is None or not hasattr(g, "bound"):
            return
        if choice == ATEN:
            from .aten_kernel import direct_calls, ops_module
            self._fast = self._aten or direct_calls(ops_module(self.kernel)).forward
        else:
            self._fast = g.bound(choice)


def _call_graph(gm, steps, calls, library: dict) -> fx.GraphModule:
    """`gm` with each kernel's ops replaced by one call of `calls[kernel.id]`, and each node in
    `library` by a call of its callable, in `steps` order."""
    import operator

    from .view_chains import view_chains
    graph = fx.Graph()
    env: dict = {}
    for n in gm.graph.nodes:
        if n.op == "placeholder":
            env[n] = graph.node_copy(n, lambda a: env[a])
    views, unneeded = view_chains([s for s in steps if isinstance(s, fx.Node) and s not in library])
    for step in steps:
        if isinstance(step, fx.Node) and step in unneeded:
            continue
        if isinstance(step, fx.Node) and step in views:
            root, chain = views[step]
            env[step] = graph.call_function(chain, (env[root],))
            env[step].name = step.name
            continue
        if isinstance(step, fx.Node):
            env[step] = graph.node_copy(step, lambda a: env[a])
            if step in library:
                env[step].target = library[step]
            continue
        call = graph.call_function(calls[step.id], tuple(env[a] for a in step.inputs))
        call.name = step.name
        for i, out in enumerate(step.outputs):
            env[out] = graph.call_function(operator.getitem, (call, i))
    output = next(n for n in gm.graph.nodes if n.op == "output")
    graph.output(fx.node.map_arg(output.args[0], lambda a: env[a]))
    from .aten_kernel import direct_calls
    module = fx.GraphModule(gm, graph)
    for n in graph.nodes:  # constants as plain attributes: read without nn.Module.__getattr__
        if n.op == "get_attr" and "." not in n.target:
            module.__dict__[n.target] = getattr(module, n.target)
    return direct_calls(module)


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
