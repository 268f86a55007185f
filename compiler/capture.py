"""From Dynamo's FX graph to compiled callables: aot_autograd capture.

Dynamo hands the backend a graph of torch-level ops and the real example inputs. aot_autograd
turns it into functional ATen graphs (core ATen decompositions): one inference graph when no
gradient is needed, a forward and a backward graph otherwise. Each is compiled by
`graph_compiler.compile_one` (freezing, the pass pipeline, code generation). The target is
resolved here, once, from the example inputs.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import os

import torch
import torch.fx as fx
from torch._decomp import core_aten_decompositions
from torch._functorch.aot_autograd import aot_module_simplified

from .calibration import Unreachable, graph_calibration
from .freezing import freezable, is_module_state
from .graph_compiler import compile_one, describe_error, new_graph_id
from .options import Options
from .report import REPORTS, GraphReport

log = logging.getLogger("fastc")


def compile_graph(gm: fx.GraphModule, example_inputs: list, opts: Options):
    """The callable Dynamo runs in place of `gm`."""
    _setup_torch_logs()
    opts = dataclasses.replace(opts, target=resolve_target(opts.target, example_inputs))  # once
    needs_grad = torch.is_grad_enabled() and any(
        isinstance(x, torch.Tensor) and x.requires_grad for x in example_inputs)
    static = [i for i, x in enumerate(example_inputs) if is_module_state(x)]
    calibration = _calibration(gm, example_inputs, opts, needs_grad)

    def fw_compiler(fw_gm: fx.GraphModule, fw_inputs):
        kind = "forward" if needs_grad else "inference"
        frozen = []
        if not needs_grad and opts.freeze:
            frozen = freezable(fw_gm, example_inputs, static)
        real_inputs = list(example_inputs) if not needs_grad else None
        return compile_one(fw_gm, kind, opts, frozen, example_inputs, real_inputs, calibration=calibration)

    def bw_compiler(bw_gm: fx.GraphModule, bw_inputs):
        return compile_one(bw_gm, "backward", opts, [], None, None)

    try:
        return aot_module_simplified(
            gm, example_inputs, fw_compiler=fw_compiler, bw_compiler=bw_compiler,
            decompositions=_decompositions(needs_grad, opts.target in ("triton", "triton-interpret")),
            keep_inference_input_mutations=True)
    except _DYNAMO_CONTROL_FLOW:
        raise  # Dynamo's own signals (restart the analysis, skip the frame): not failures
    except Exception as e:
        if opts.on_error == "raise":
            raise
        reason = describe_error(e)
        log.warning("fastc: capture failed (%s); running this graph eagerly", reason)
        REPORTS.append(GraphReport(new_graph_id(), "eager", fallback=f"capture failed: {reason}"))
        return gm.forward


def _calibration(gm: fx.GraphModule, example_inputs: list, opts: Options, needs_grad: bool):
    """The user's calibration set as this graph's inputs (a GraphCalibration), or the reason the
    lossy passes cannot run on this graph (a str); None without lossy passes. A bad calibration
    set, or lossy passes with gradients required, is the user's error: it raises."""
    if not opts.lossy:
        return None
    if needs_grad:
        raise ValueError(f"fastc option lossy={opts.lossy!r}: lossy passes rewrite models for inference, "
                         "and this call requires gradients; call the model under torch.no_grad() or "
                         "torch.inference_mode(), or drop the lossy option for training")
    try:
        return graph_calibration(gm, example_inputs, opts.calibration)
    except Unreachable as e:
        return str(e)


# Exceptions Dynamo raises through a backend to steer its own tracing (restart the analysis with
# a scalar tensorified or an input unspecialized, skip a frame): they must reach Dynamo untouched.
_DYNAMO_CONTROL_FLOW = (torch._dynamo.exc.RestartAnalysis, torch._dynamo.exc.SkipFrame)


def resolve_target(target: str, example_inputs) -> str:
    """"auto" is "triton" when the graph's tensors live on a CUDA device, else "cpu"."""
    if target != "auto":
        return target
    cuda = any(isinstance(x, torch.Tensor) and x.device.type == "cuda" for x in example_inputs)
    return "triton" if cuda else "cpu"


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
