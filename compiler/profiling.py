"""`fastc explain --profile MODEL`: where a compiled model's time per forward goes.

    profile = profile_model("char-lm", target="cpu", batch=8)
    print(profile.text())

The model is compiled with fastc, warmed up, then timed without a profiler against eager in the
same process (interleaved rounds, medians), then run under torch.profiler. While a profiler runs
fastc's runner puts the whole graph and each kernel and library call in a range named after it
(`fastc::g0`, `fastc::g0.k3_reduction`: codegen/wrapper.py); ATen ops outside kernels show as
themselves (`aten::addmm`). Per forward, under the profiler:

    wall      the forward's own range (everything: Dynamo's guards, aot_autograd's wrappers, the
              frozen-weights check, the graph)
    kernels   time in kernel ranges (a native kernel's range holds its Python call, its argument
              packing and output allocation, and the machine code; a kernel run as ATen holds its ops)
    library   time in library calls (bcq_linear)
    ATen      time in ATen ops outside kernels (outermost ops only)
    overhead  the rest: Python between the steps inside the graph's range, and outside it

A profiler adds its own cost per recorded op (about a microsecond), so `wall` under the profiler
is above the unprofiled time; both are printed. Times under the profiler are averaged over the
faster half of the profiled calls (at most the median wall time), so that a shared machine's
hiccups do not swamp the breakdown; the unprofiled times are medians.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field

import torch

from .report import REPORTS

FORWARD_RANGE = "fastc-profile::forward"
EAGER_RANGE = "fastc-profile::eager"


@dataclass
class KernelTime:
    range: str            # its range name in the trace
    name: str             # kernel (or library call) name in the graph
    graph: int            # the graph's id in fastc.reports()
    kind: str             # "native", "triton", "ATen" (a planned kernel run as its ATen ops) or "library"
    how: str              # how it ran (the choice: "native, 1 thread", "ATen", ...)
    calls: int            # per forward
    ms: float             # per forward
    measured: dict = field(default_factory=dict)  # the chooser's first-call timings, candidate -> ms

    @property
    def mean_us(self) -> float:
        return 1e3 * self.ms / self.calls if self.calls else 0.0


@dataclass
class OpTime:
    name: str             # aten::addmm
    calls: int            # per forward
    ms: float             # per forward
    eager_ms: float | None = None  # the same op's time per forward in eager (outermost calls of it)


@dataclass
class Profile:
    model: str
    target: str
    batch: int | None
    calls: int                     # profiled forwards
    rounds: int
    machine: str
    eager_ms: float                # median per forward, no profiler
    fastc_ms: float
    wall_ms: float                 # per forward under the profiler
    graph_ms: float                # inside the graphs' ranges
    kernels: list[KernelTime] = field(default_factory=list)
    ops: list[OpTime] = field(default_factory=list)     # ATen ops outside kernels
    graph_ops_ms: float = 0.0      # of `ops`, inside the graphs' ranges
    eager_wall_ms: float = 0.0     # eager per forward under the profiler
    eager_ops_ms: float = 0.0      # eager's outermost ATen ops per forward
    eager_ops: list[OpTime] = field(default_factory=list)
    graphs: int = 0
    #: Named ranges outside the graphs' (Dynamo's guard check, aot_autograd's wrappers), ms per forward
    outside: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    # -- the breakdown -------------------------------------------------------------------------
    def kernel_ms(self, kind: str | None = None) -> float:
        return sum(k.ms for k in self.kernels if kind is None or k.kind == kind)

    @property
    def ops_ms(self) -> float:
        return sum(o.ms for o in self.ops)

    @property
    def overhead_ms(self) -> float:
        """Wall time per forward that is in no kernel, library call or ATen op."""
        return self.wall_ms - self.kernel_ms() - self.ops_ms

    @property
    def graph_overhead_ms(self) -> float:
        """Of the overhead, the part inside the graphs' ranges: Python between the steps."""
        return self.graph_ms - self.kernel_ms() - self.graph_ops_ms

    def to_dict(self) -> dict:
        return asdict(self)

    def text(self, top: int = 0) -> str:
        """The report; `top` > 0 keeps that many rows per table (slowest first), 0 all."""
        ratio = self.fastc_ms / self.eager_ms if self.eager_ms else float("nan")
        lines = [f"profile of {self.model} (batch {self.batch if self.batch is not None else 'default'}), "
                 f"fastc target {self.target}, {self.graphs} graph{'s' if self.graphs != 1 else ''}",
                 f"machine: {self.machine}",
                 f"time per forward, no profiler (median of {self.rounds} interleaved rounds of {self.calls} calls):",
                 f"  eager {self.eager_ms:.3f} ms, fastc {self.fastc_ms:.3f} ms, fastc / eager {ratio:.2f}",
                 f"fastc per forward under the profiler ({self.calls} calls): {self.wall_ms:.3f} ms"]

        def part(label, count, ms):
            share = 100 * ms / self.wall_ms if self.wall_ms else 0.0
            calls = f"{count} calls" if count is not None else ""
            lines.append(f"  {label:<46} {calls:>10} {ms:9.3f} ms {share:5.1f}%")
        groups = [("native", "native kernels"), ("triton", "Triton kernels"),
                  ("ATen", "planned kernels run as ATen"), ("library", "library calls")]
        for kind, label in groups:
            calls = sum(k.calls for k in self.kernels if k.kind == kind)
            if calls or kind in ("native", "ATen"):
                part(label, calls, self.kernel_ms(kind))
        part("ATen ops outside kernels", sum(o.calls for o in self.ops), self.ops_ms)
        part("overhead in the graph (Python between steps)", None, self.graph_overhead_ms)
        part("overhead outside the graph (guards, wrappers)", None, self.overhead_ms - self.graph_overhead_ms)
        if self.outside:
            lines.append("    of which " + ", ".join(f"{name} {ms:.3f} ms" for name, ms in sorted(self.outside.items())))
        lines.append(f"eager per forward under the profiler: {self.eager_wall_ms:.3f} ms: ATen ops "
                     f"{self.eager_ops_ms:.3f} ms, the rest {self.eager_wall_ms - self.eager_ops_ms:.3f} ms")

        kernels = sorted(self.kernels, key=lambda k: (-k.ms, k.range))
        w = max([len("range")] + [len(k.range) for k in kernels])
        lines += ["", f"fastc kernels, per forward ({len(kernels)}; 'measured': the chooser's timings at "
                  "the first call, us)",
                  f"  {'range':<{w}} {'kind':<8} {'calls':>5} {'ms':>9} {'mean us':>9}  measured"]
        for k in kernels[:top or None]:
            measured = ", ".join(f"{c} {1e3 * ms:.1f}" for c, ms in sorted(k.measured.items(), key=lambda cm: cm[1]))
            lines.append(f"  {k.range:<{w}} {k.kind:<8} {k.calls:>5} {k.ms:9.3f} {k.mean_us:9.1f}  {measured}")
        if top and len(kernels) > top:
            lines.append(f"  ... {len(kernels) - top} more, {sum(k.ms for k in kernels[top:]):.3f} ms")

        ops = sorted(self.ops, key=lambda o: (-o.ms, o.name))
        w = max([len("op")] + [len(o.name) for o in ops])
        lines += ["", f"ATen ops outside kernels, per forward ({len(ops)} ops; 'eager ms': the same op in eager)",
                  f"  {'op':<{w}} {'calls':>5} {'ms':>9} {'mean us':>9} {'eager ms':>9}"]
        for o in ops[:top or None]:
            eager = f"{o.eager_ms:9.3f}" if o.eager_ms is not None else f"{'-':>9}"
            lines.append(f"  {o.name:<{w}} {o.calls:>5} {o.ms:9.3f} {1e3 * o.ms / max(1, o.calls):9.1f} {eager}")
        if top and len(ops) > top:
            lines.append(f"  ... {len(ops) - top} more, {sum(o.ms for o in ops[top:]):.3f} ms")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def profile_model(name: str, target: str = "cpu", batch: int | None = None, calls: int = 20,
                  rounds: int = 5, warmup: int = 3) -> Profile:
    """Compiles zoo model `name` with fastc for `target`, and profiles it against eager."""
    model, compiled, inputs, first = compile_model(name, target, batch)
    return profile_compiled(name, model, compiled, inputs, first, target=target, batch=batch, calls=calls,
                            rounds=rounds, warmup=warmup)


def compile_model(name: str, target: str = "cpu", batch: int | None = None, options: dict | None = None):
    """(eager model, compiled model, inputs, index of its first report in fastc.reports()): zoo
    model `name` in eval mode, compiled by its first call (on CUDA for target triton), with fastc
    `options` besides the target."""
    from fastc_eval import zoo
    model, inputs = zoo.build(name, batch=batch)
    model = model.eval()
    if target == "triton":
        model = model.to("cuda")
        inputs = {k: v.to("cuda") for k, v in inputs.items()}
    torch._dynamo.reset()
    first = len(REPORTS)
    compiled = torch.compile(model, backend="fastc", options={"target": target, **(options or {})})
    with torch.no_grad():
        compiled(**inputs)
    return model, compiled, inputs, first


def profile_compiled(name: str, model, compiled, inputs: dict, first: int, *, target: str = "cpu",
                     batch: int | None = None, calls: int = 20, rounds: int = 5, warmup: int = 3) -> Profile:
    """The profile of `compiled` (fastc's compilation of `model`, whose reports start at
    `first` in fastc.reports()) against `model`, called with keyword arguments `inputs`."""
    from fastc.costmodel import machine

    if calls < 1 or rounds < 1:
        raise ValueError("calls and rounds must be at least 1")
    cuda = any(isinstance(x, torch.Tensor) and x.is_cuda for x in inputs.values())
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    with torch.no_grad():
        for _ in range(warmup):
            compiled(**inputs)
            model(**inputs)
        sync()

        times = {"eager": [], "fastc": []}
        for _ in range(rounds):  # interleaved: both see the same machine load
            for label, fn in (("eager", model), ("fastc", compiled)):
                for _ in range(calls):
                    start = time.perf_counter()
                    fn(**inputs)
                    sync()
                    times[label].append((time.perf_counter() - start) * 1e3)

        # The first profiled call builds the runner's code with ranges: not in the measured trace.
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
            compiled(**inputs)
            model(**inputs)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                with torch.profiler.record_function(FORWARD_RANGE):
                    compiled(**inputs)
                    sync()
            for _ in range(calls):
                with torch.profiler.record_function(EAGER_RANGE):
                    model(**inputs)
                    sync()
        reports = REPORTS[first:]  # a variant compiled meanwhile (weights changed) is in the trace too

    profile = Profile(name, target, batch, calls, rounds, machine.describe(),
                      eager_ms=statistics.median(times["eager"]), fastc_ms=statistics.median(times["fastc"]),
                      wall_ms=0.0, graph_ms=0.0, graphs=len(reports))
    _breakdown(profile, prof.events(), reports)
    fallbacks = [r for r in reports if r.fallback]
    if fallbacks:
        profile.notes.append(f"{len(fallbacks)} graph(s) run as captured (ATen): " +
                             "; ".join(f"graph {r.graph_id}: {r.fallback}" for r in fallbacks))
    return profile


def _breakdown(profile: Profile, events, reports) -> None:
    """Fills in `profile`'s times from the profiler's events: per forward, then averaged over the
    faster half of the forwards (those at most the median wall time), fastc's and eager's alike."""
    kernels: dict[str, KernelTime] = {}
    for r in reports:
        generated, library = set(r.generated_kernels), set(r.library_calls)
        measured: dict[str, dict] = {}
        for m in r.measurements:
            if m.get("ms") is not None:
                measured.setdefault(m["name"], {})[_candidate(m["candidate"])] = m["ms"]
        for name, range_ in r.ranges.items():
            how = r.decisions.get(name, "")
            if name in library:
                kind = "library"
            elif name in generated and how != "ATen":
                kind = "triton" if r.target.startswith("triton") else "native"
            else:
                kind = "ATen"
            kernels[range_] = KernelTime(range_, name, r.graph_id, kind, how or ("ATen" if kind == "ATen" else ""),
                                         0, 0.0, measured.get(name, {}))
    graphs = {f"fastc::g{r.graph_id}" for r in reports}

    forwards: dict[int, dict] = {}   # id of a forward's range -> its parts
    for e in events:
        if e.name in (FORWARD_RANGE, EAGER_RANGE):
            forwards.setdefault(id(e), _parts())["wall"] = (e.name, e.time_range.elapsed_us() / 1e3)
    for e in events:
        if e.name in (FORWARD_RANGE, EAGER_RANGE):
            continue
        root, in_kernel, in_graph, in_op = _ancestry(e, kernels, graphs)
        if root is None or id(root) not in forwards:
            continue
        f, ms = forwards[id(root)], e.time_range.elapsed_us() / 1e3
        if root.name == FORWARD_RANGE:
            if e.name in kernels:
                _add(f["kernels"], e.name, ms)
            elif e.name in graphs:
                f["graph"] += ms
            elif e.name.startswith("aten::") and not in_kernel and not in_op:
                _add(f["ops"], e.name, ms)
                if in_graph:
                    f["graph_ops"] += ms
            elif not e.name.startswith(("aten::", "fastc::")) and not in_graph and not in_kernel \
                    and not _holds(e, graphs):
                _add(f["outside"], e.name, ms)
        elif e.name.startswith("aten::"):
            if not in_op:
                _add(f["ops"], e.name, ms)
            if not _inside_same(e):
                _add(f["same"], e.name, ms)

    fastc = _faster_half([f for f in forwards.values() if f["wall"][0] == FORWARD_RANGE])
    eager = _faster_half([f for f in forwards.values() if f["wall"][0] == EAGER_RANGE])
    n, ne = max(1, len(fastc)), max(1, len(eager))
    profile.wall_ms = sum(f["wall"][1] for f in fastc) / n
    profile.graph_ms = sum(f["graph"] for f in fastc) / n
    profile.graph_ops_ms = sum(f["graph_ops"] for f in fastc) / n
    profile.eager_wall_ms = sum(f["wall"][1] for f in eager) / ne
    for range_, k in kernels.items():
        k.calls = round(sum(f["kernels"].get(range_, (0, 0.0))[0] for f in fastc) / n)
        k.ms = sum(f["kernels"].get(range_, (0, 0.0))[1] for f in fastc) / n
    profile.kernels = sorted(kernels.values(), key=lambda k: (k.graph, _kernel_order(k.name)))
    same = _total(eager, "same", ne)
    profile.ops = [OpTime(name, calls, ms, same.get(name, (0, None))[1])
                   for name, (calls, ms) in sorted(_total(fastc, "ops", n).items())]
    profile.eager_ops = [OpTime(name, calls, ms) for name, (calls, ms) in sorted(_total(eager, "ops", ne).items())]
    profile.eager_ops_ms = sum(o.ms for o in profile.eager_ops)
    profile.outside = {name: ms for name, (_, ms) in _total(fastc, "outside", n).items()}


def _parts() -> dict:
    return {"wall": ("", 0.0), "graph": 0.0, "graph_ops": 0.0, "kernels": {}, "ops": {}, "same": {}, "outside": {}}


def _add(table: dict, name: str, ms: float) -> None:
    calls, total = table.get(name, (0, 0.0))
    table[name] = (calls + 1, total + ms)


def _faster_half(forwards: list[dict]) -> list[dict]:
    """The forwards of at most the median wall time: a shared machine's hiccups (another process
    taking a core while ATen's threads wait for each other) land in a few calls, not in all."""
    if not forwards:
        return []
    median = statistics.median(f["wall"][1] for f in forwards)
    return [f for f in forwards if f["wall"][1] <= median]


def _total(forwards: list[dict], part: str, n: int) -> dict:
    """name -> (calls, ms) per forward of `part`, over `forwards`."""
    out: dict = {}
    for f in forwards:
        for name, (calls, ms) in f[part].items():
            c, t = out.get(name, (0, 0.0))
            out[name] = (c + calls, t + ms)
    return {name: (round(c / n), t / n) for name, (c, t) in out.items()}


def _candidate(candidate) -> str:
    from fastc.costmodel import ATEN
    from fastc.costmodel.features import candidate_text
    from fastc.ir.schedule import Schedule
    if isinstance(candidate, dict):
        return candidate_text(Schedule(**candidate))
    return "ATen" if candidate == ATEN else str(candidate)


def _ancestry(e, kernels, graphs):
    """(outermost event around `e`, inside a kernel range, inside a graph range, inside an ATen op)."""
    in_kernel = in_graph = in_op = False
    root = None
    p = e.cpu_parent
    while p is not None:
        if p.name in kernels:
            in_kernel = True
        elif p.name in graphs:
            in_graph = True
        elif p.name.startswith("aten::"):
            in_op = True
        root = p
        p = p.cpu_parent
    return root, in_kernel, in_graph, in_op


def _holds(e, names) -> bool:
    """Whether a range named in `names` is inside `e`."""
    return any(c.name in names or _holds(c, names) for c in e.cpu_children)


def _inside_same(e) -> bool:
    p = e.cpu_parent
    while p is not None:
        if p.name == e.name:
            return True
        p = p.cpu_parent
    return False


def _kernel_order(name: str):
    """k3_reduction before k12_pointwise; library calls (node names) after kernels."""
    head = name.split("_", 1)[0]
    return (0, int(head[1:]), name) if head[:1] == "k" and head[1:].isdigit() else (1, 0, name)
