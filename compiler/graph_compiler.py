"""Compiles one captured ATen graph: freezing, the pass pipeline, code generation, and the
callable in aot_autograd's boxed convention that runs it.

    captured -> frozen (inference) -> passes (pipeline.py) -> kernels (codegen) -> boxed runner

A failure in any stage runs the graph as captured, with a warning and the reason in the report
(or raises, with on_error="raise").
"""
from __future__ import annotations

import itertools
import logging
import time

import torch
import torch.fx as fx
from torch._subclasses.fake_tensor import unset_fake_temporarily

from fastc.costmodel import compile_choices
from fastc.passes import MetricError, PassContext

from .debug_dump import DebugDump
from .freezing import freeze
from .lossy_context import lossy_context
from .frozen_weights import FrozenWeights, Variant, picker
from .ir.constants import copy_graph, drop_unused_constants, is_constant
from .options import Options
from .pass_manager import run_pipeline
from .report import REPORTS, GraphReport, count_ops, op_histogram, record_plan

log = logging.getLogger("fastc")
_graph_ids = itertools.count()


def new_graph_id() -> int:
    return next(_graph_ids)


def describe_error(e: BaseException) -> str:
    """`Type: message`, never empty."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else f"{type(e).__name__} (no message)"


def compile_one(gm: fx.GraphModule, kind: str, opts: Options, frozen: list[int],
                 example_inputs, real_inputs, *, calibration=None):
    # aot_autograd calls us inside its fake mode; passes evaluate real tensors (frozen weights).
    with unset_fake_temporarily():
        return _compile_real(gm, kind, opts, frozen, example_inputs, real_inputs, calibration=calibration)


def _compile_real(gm: fx.GraphModule, kind: str, opts: Options, frozen: list[int],
                  example_inputs, real_inputs, variant_of: int | None = None, calibration=None):
    start = time.perf_counter()
    report = GraphReport(new_graph_id(), kind, nodes_captured=count_ops(gm), frozen_inputs=len(frozen),
                         variant_of=variant_of)
    REPORTS.append(report)
    dump = DebugDump(opts.debug_dir, report.graph_id, kind)
    dump.graph("captured", gm)
    captured = gm
    guard = None
    try:
        if frozen:
            captured = copy_graph(gm)
            guard = FrozenWeights(frozen, [example_inputs[i] for i in frozen])
            freeze(gm, example_inputs, frozen)
            dump.graph("frozen", gm)
        keep = [i for i in range(len(example_inputs or ())) if i not in set(frozen)]
        choices = compile_choices(opts.choices, target=opts.target, kernel_choice=opts.kernel_choice,
                                  autotune=opts.mode.startswith("max-autotune"), tuning=opts.tuning,
                                  model_path=opts.cost_model)
        ctx = PassContext(target=opts.target, choices=choices,
                          example_inputs=[real_inputs[i] for i in keep] if real_inputs else None)
        if opts.lossy:
            opts = lossy_context(ctx, gm, opts, calibration, keep, report)
        run_pipeline(gm, opts, report, dump, ctx=ctx)
        if _no_constant_outputs(gm):
            dump.graph("copy-constant-outputs", gm)
        drop_unused_constants(gm)
        dump.constants(gm)
        runner = _generate_code(gm, opts, report, dump, choices)
    except MetricError:
        raise  # the user's metric failed, or cannot measure this graph: an option error
    except Exception as e:
        if opts.on_error == "raise":
            raise
        reason = describe_error(e)
        log.warning("fastc: %s graph %d failed in the pipeline (%s); running it as captured",
                    kind, report.graph_id, reason)
        report.fallback = reason
        gm, frozen, runner, guard = captured, [], None, None
    report.nodes_final = count_ops(gm)
    report.ops_final = op_histogram(gm)
    record_plan(report, gm)
    if report.kernels:
        dump.text("kernel_plan.txt", "\n".join(report.kernels) + "\n")
    report.compile_ms = (time.perf_counter() - start) * 1e3
    dump.text("report.json", report.json())
    log.info("%s", report.text())
    unfrozen = None
    if guard is not None:
        pristine = captured

        def build_unfrozen():
            with unset_fake_temporarily():
                return _compile_real(copy_graph(pristine), kind, opts, [], None, None, variant_of=report.graph_id)
        unfrozen = Variant(build_unfrozen)
    return _boxed(gm, frozen, runner, guard, unfrozen, report)


def _no_constant_outputs(gm: fx.GraphModule) -> int:
    """A graph output that is a constant (a folded weight) is returned as a copy: the caller may
    change it in place, which must not change the constant that later calls return."""
    output = next(n for n in gm.graph.nodes if n.op == "output")
    copies = {}

    def copy_of(a):
        if not is_constant(a):
            return a
        if a not in copies:
            with gm.graph.inserting_before(output):
                copies[a] = gm.graph.call_function(torch.ops.aten.clone.default, (a,))
            copies[a].meta.update({k: v for k, v in a.meta.items() if k in ("type", "val")})
        return copies[a]
    output.args = fx.node.map_arg(output.args, copy_of)
    if copies:
        gm.recompile()
    return len(copies)


def _generate_code(gm: fx.GraphModule, opts: Options, report: GraphReport, dump: DebugDump, choices):
    """A runner of generated kernels for the planned graph, or None to run its ATen ops."""
    target = opts.target  # resolved once, in capture.py
    report.target = target
    if target == "aten":
        return None
    from fastc.codegen.wrapper import compile_planned
    runner, info = compile_planned(gm, target, strict=opts.on_error == "raise",
                                   autotune=opts.mode.startswith("max-autotune"), choose=opts.kernel_choice,
                                   choices=choices, debug_dir=dump.dir, label=f"g{report.graph_id}")
    # The report shares the lists: a kernel that fails on its first call moves to the fallbacks,
    # and measurements taken at first calls land in the report.
    report.generated_kernels = info.kernels
    report.aten_kernels = info.fallbacks
    report.measurements = info.measurements
    report.decisions = info.decisions
    report.ranges = runner.range_names()
    report.library_calls = [n.name for n in runner.library]
    if info.fallbacks:
        name, reason = info.fallbacks[0]
        more = f" and {len(info.fallbacks) - 1} more" if len(info.fallbacks) > 1 else ""
        log.warning("fastc: graph %d: %d of %d planned kernels run as ATen (%s: %s%s; see fastc.reports())",
                    report.graph_id, len(info.fallbacks), len(info.fallbacks) + len(info.kernels),
                    name, reason, more)
    for name, source in info.sources.items():
        dump.text(f"kernel_{name}.{'mlir' if target == 'cpu' else 'py'}", source)
    return runner


def _boxed(gm: fx.GraphModule, frozen: list[int], runner=None, guard: FrozenWeights | None = None,
           unfrozen: Variant | None = None, report: GraphReport | None = None):
    """aot_autograd's boxed calling convention: one list of all inputs, frozen ones dropped.

    With frozen weights, each call checks that its weights are the ones frozen; a call with other
    weights runs `unfrozen` (the same graph compiled with the weights as inputs) instead."""
    frozen_set = set(frozen)
    forward = runner if runner is not None else gm.forward

    if frozen_set:
        keep = None  # the positions of the inputs that are not frozen (known at the first call)

        def run(args):
            nonlocal keep
            if keep is None:
                keep = picker([i for i in range(len(args)) if i not in frozen_set])
            if guard is not None and not guard.match(args):
                if report is not None and report.weights_changed is None:
                    report.weights_changed = guard.describe_mismatch(args)
                    log.info("fastc: graph %d: %s; running it with the weights as inputs",
                             report.graph_id, report.weights_changed)
                return unfrozen.get()(args)
            kept = keep(args)
            args.clear()
            return forward(*kept)
    else:
        def run(args):
            kept = list(args)
            args.clear()
            return forward(*kept)
    run._boxed_call = True
    run.graph_module = gm
    return run
