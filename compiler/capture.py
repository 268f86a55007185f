"""From Dynamo's FX graph to a compiled callable: aot_autograd capture, freezing, the pipeline.

Dynamo hands the backend a graph of torch-level ops and the real example inputs. aot_autograd
turns it into functional ATen graphs (core ATen decompositions): one inference graph when no
gradient is needed, a forward and a backward graph otherwise.

Freezing (inference only): parameters and buffers (inputs Dynamo marks as static module state)
become constants of the graph, so passes can rewrite weights (fold BatchNorm, precompute
transposes). As with Inductor's freezing, weights changed in place after compilation are not
guaranteed to be seen: recompile (torch._dynamo.reset()) after changing weights.
"""
from __future__ import annotations

import dataclasses
import functools

import itertools
import logging
import os
import time

import torch
import torch.fx as fx
from torch._decomp import core_aten_decompositions
from torch._functorch.aot_autograd import aot_module_simplified
from torch._subclasses.fake_tensor import unset_fake_temporarily

from .debug_dump import DebugDump
from .frozen_weights import FrozenWeights, Variant
from .ir.constants import add_constant, drop_unused_constants, is_constant
from .options import Options
from fastc.passes import AccuracyBudget, PassContext

from .pass_manager import run_pipeline
from .report import REPORTS, GraphReport, count_ops, op_histogram, record_plan

log = logging.getLogger("fastc")
_graph_ids = itertools.count()


def compile_graph(gm: fx.GraphModule, example_inputs: list, opts: Options):
    """The callable Dynamo runs in place of `gm`."""
    _setup_torch_logs()
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs)
    static = [i for i, x in enumerate(example_inputs) if _is_module_state(x)]

    def fw_compiler(fw_gm: fx.GraphModule, fw_inputs):
        kind = "forward" if needs_grad else "inference"
        frozen = []
        if not needs_grad and opts.freeze:
            frozen = _freezable(fw_gm, example_inputs, static)
        real_inputs = list(example_inputs) if not needs_grad else None
        return _compile_one(fw_gm, kind, opts, frozen, example_inputs, real_inputs)

    def bw_compiler(bw_gm: fx.GraphModule, bw_inputs):
        return _compile_one(bw_gm, "backward", opts, [], None, None)

    try:
        return aot_module_simplified(
            gm, example_inputs, fw_compiler=fw_compiler, bw_compiler=bw_compiler,
            decompositions=_decompositions(needs_grad, _resolve_target(opts.target, example_inputs) in ("triton", "triton-interpret")),
            keep_inference_input_mutations=True)
    except _DYNAMO_CONTROL_FLOW:
        raise  # Dynamo's own signals (restart the analysis, skip the frame): not failures
    except Exception as e:
        if opts.on_error == "raise":
            raise
        reason = describe_error(e)
        log.warning("fastc: capture failed (%s); running this graph eagerly", reason)
        REPORTS.append(GraphReport(next(_graph_ids), "eager", fallback=f"capture failed: {reason}"))
        return gm.forward


# Exceptions Dynamo raises through a backend to steer its own tracing (restart the analysis with
# a scalar tensorified or an input unspecialized, skip a frame): they must reach Dynamo untouched.
_DYNAMO_CONTROL_FLOW = (torch._dynamo.exc.RestartAnalysis, torch._dynamo.exc.SkipFrame)


def describe_error(e: BaseException) -> str:
    """`Type: message`, never empty."""
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else f"{type(e).__name__} (no message)"


# Decompositions that give wrong gradients when autograd differentiates through them (torch
# 2.13): the CPU flash-attention decomposition's backward differs from eager's by O(10) on a
# causal attention block. With gradients required these ops stay whole (their own backward op).
_WRONG_UNDER_AUTOGRAD = (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,)

# Ops whose ATen kernel is fused and fast: decomposing them only pays when fastc generates the
# code for the pieces. With the aten target they stay whole.
_FUSED_IN_ATEN = (torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default,)


@functools.lru_cache(maxsize=None)
def _decompositions(needs_grad: bool, generates_code: bool) -> dict:
    """Core ATen decompositions, less the ops kept whole. Built once per process (about 0.1 s a
    graph otherwise); aot_autograd only reads the table."""
    table = core_aten_decompositions()
    keep = set(_WRONG_UNDER_AUTOGRAD if needs_grad else ())
    if not generates_code:
        keep.update(_FUSED_IN_ATEN)
    for op in keep:
        table.pop(op, None)
    return table


def _setup_torch_logs():
    """Gives the "fastc" logger torch's handlers when TORCH_LOGS names it and fastc was imported
    after torch read TORCH_LOGS (the usual case: the backend is loaded on first use)."""
    if "fastc" not in os.environ.get("TORCH_LOGS", ""):
        return
    if any(not isinstance(h, logging.NullHandler) for h in log.handlers):
        return
    try:
        torch._logging._internal._init_logs()
    except Exception:  # private API: plain logging configuration still works
        pass


def _is_module_state(x) -> bool:
    """Parameters and buffers: Dynamo marks module state as a static input."""
    return isinstance(x, torch.Tensor) and (
        isinstance(x, torch.nn.Parameter) or getattr(x, "_dynamo_static_input_type", None) is not None)


def _freezable(fw_gm: fx.GraphModule, example_inputs: list, static: list[int]) -> list[int]:
    """Indices of the graph inputs that may become constants: module state that the graph
    neither mutates nor returns (an alias of it must stay the caller's tensor)."""
    placeholders = [n for n in fw_gm.graph.nodes if n.op == "placeholder"]
    if len(placeholders) != len(example_inputs):
        log.debug("fastc: not freezing: %d graph inputs for %d example inputs",
                  len(placeholders), len(example_inputs))
        return []
    ctx = torch._guards.TracingContext.try_get()
    meta = ctx.fw_metadata if ctx is not None else None
    if meta is None:
        return []
    mutated = {i for i, info in enumerate(meta.input_info) if info.mutates_data or info.mutates_metadata}
    aliased = {o.base_idx for o in meta.output_info if o.base_idx is not None}
    return [i for i in static if i not in mutated and i not in aliased]


def _freeze(gm: fx.GraphModule, example_inputs: list, frozen: list[int]):
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    for i in frozen:
        node = placeholders[i]
        const = add_constant(gm, example_inputs[i], hint=node.name)
        node.replace_all_uses_with(const)
        gm.graph.erase_node(node)
    gm.recompile()


def _compile_one(gm: fx.GraphModule, kind: str, opts: Options, frozen: list[int],
                 example_inputs, real_inputs):
    # aot_autograd calls us inside its fake mode; passes evaluate real tensors (frozen weights).
    with unset_fake_temporarily():
        return _compile_real(gm, kind, opts, frozen, example_inputs, real_inputs)


def _compile_real(gm: fx.GraphModule, kind: str, opts: Options, frozen: list[int],
                  example_inputs, real_inputs, variant_of: int | None = None):
    start = time.perf_counter()
    report = GraphReport(next(_graph_ids), kind, nodes_captured=count_ops(gm), frozen_inputs=len(frozen),
                         variant_of=variant_of)
    REPORTS.append(report)
    dump = DebugDump(opts.debug_dir, report.graph_id, kind)
    dump.graph("captured", gm)
    opts = dataclasses.replace(opts, target=_resolve_target(opts.target, _example_values(gm)))
    captured = gm
    guard = None
    try:
        if frozen:
            captured = _copy(gm)
            guard = FrozenWeights(frozen, [example_inputs[i] for i in frozen])
            _freeze(gm, example_inputs, frozen)
            dump.graph("frozen", gm)
        keep = [i for i in range(len(example_inputs or ())) if i not in set(frozen)]
        ctx = PassContext(target=opts.target,
                          example_inputs=[real_inputs[i] for i in keep] if real_inputs else None,
                          accuracy_budget=(AccuracyBudget(opts.accuracy_budget)
                                           if opts.accuracy_budget is not None else None))
        run_pipeline(gm, opts, report, dump, ctx=ctx)
        _no_constant_outputs(gm)
        drop_unused_constants(gm)
        dump.constants(gm)
        runner = _generate_code(gm, opts, report, dump)
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
                return _compile_real(_copy(pristine), kind, opts, [], None, None, variant_of=report.graph_id)
        unfrozen = Variant(build_unfrozen)
    return _boxed(gm, frozen, runner, guard, unfrozen, report)


def _no_constant_outputs(gm: fx.GraphModule) -> None:
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


def _copy(gm: fx.GraphModule) -> fx.GraphModule:
    import copy
    return fx.GraphModule(gm, copy.deepcopy(gm.graph))


def _resolve_target(target: str, example_inputs) -> str:
    """"auto" is "triton" when the graph's tensors live on a CUDA device, else "cpu"."""
    if target != "auto":
        return target
    cuda = any(isinstance(x, torch.Tensor) and x.device.type == "cuda" for x in example_inputs)
    return "triton" if cuda else "cpu"


def _example_values(gm: fx.GraphModule) -> list:
    return ([n.meta.get("val") for n in gm.graph.nodes if n.op == "placeholder"]
            + [getattr(gm, n.target) for n in gm.graph.nodes if n.op == "get_attr"])


def _generate_code(gm: fx.GraphModule, opts: Options, report: GraphReport, dump: DebugDump):
    """A runner of generated kernels for the planned graph, or None to run its ATen ops."""
    target = _resolve_target(opts.target, _example_values(gm))
    report.target = target
    if target == "aten":
        return None
    from fastc.codegen.wrapper import compile_planned
    runner, info = compile_planned(gm, target, strict=opts.on_error == "raise",
                                   autotune=opts.mode.startswith("max-autotune"), choose=opts.kernel_choice)
    # The report shares the lists: a kernel that fails on its first call moves to the fallbacks.
    report.generated_kernels = info.kernels
    report.aten_kernels = info.fallbacks
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
        def run(args):
            if guard is not None and not guard.match(args):
                if report is not None and report.weights_changed is None:
                    report.weights_changed = guard.describe_mismatch(args)
                    log.info("fastc: graph %d: %s; running it with the weights as inputs",
                             report.graph_id, report.weights_changed)
                return unfrozen.get()(args)
            kept = [a for i, a in enumerate(args) if i not in frozen_set]
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
