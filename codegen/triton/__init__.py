"""Triton code generation for planned kernels: `lower(kernel, gm) -> GeneratedKernel`.

One template per kernel kind (pointwise.py, reduction.py, matmul.py) over a shared kernel body
(body.py: loads, views, the pointwise rules of pointwise_ops.py). Lowering produces a KernelSpec
(source plus launch data, spec.py), cached on disk by kernel text; launcher.py runs it. What
Triton does not lower is in the op table (fastc.ir.op_table), which the planner reads too.
"""
from __future__ import annotations

import os

from ..cache import load_spec, spec_key, store_spec
from ..errors import Unsupported
from ..graph_bindings import graph_bindings
from ..refusals import refuse_by_table
from .kernel_text import kernel_text
from .launcher import GeneratedKernel
from .matmul import lower_matmul
from .options import LowerOptions
from .pointwise import lower_pointwise
from .reduction import has_reduction, lower_reduction
from .spec import KernelSpec

__all__ = ["GeneratedKernel", "KernelSpec", "Unsupported", "lower", "lower_spec"]


def lower(kernel, gm=None, *, options: dict | None = None, use_cache: bool = True) -> GeneratedKernel:
    """The generated kernel for `kernel` (a fastc.ir.kernel_plan.Kernel of `gm`).

    Raises Unsupported (naming the op) when the kernel cannot be lowered."""
    options = dict(options or {})
    if not options.get("target"):
        options["target"] = "triton-interpret" if os.environ.get("TRITON_INTERPRET") == "1" else "triton"
    if gm is not None and "graph_symbols" not in options:
        options["graph_symbols"] = sorted(graph_bindings(gm))
    text = kernel_text(kernel)
    key = spec_key(text, options) if use_cache else None
    cached = load_spec(key) if key else None
    if cached is not None:
        try:
            return GeneratedKernel(KernelSpec.from_json(cached))
        except (TypeError, ValueError, KeyError, SyntaxError):
            pass  # a well-formed but stale entry: rebuild it
    spec = lower_spec(kernel, options)
    if key:
        store_spec(key, spec.to_json())
    return GeneratedKernel(spec)


def lower_spec(kernel, options: dict | None = None) -> KernelSpec:
    opts = LowerOptions.of(options)
    refuse_by_table(kernel.nodes, "triton-interpret" if opts.interpret else "triton")
    if kernel.kind == "matmul":
        return lower_matmul(kernel, opts)
    if kernel.kind == "reduction" or has_reduction(kernel):
        if not has_reduction(kernel):
            return lower_pointwise(kernel, opts)
        return lower_reduction(kernel, opts)
    if kernel.kind == "pointwise":
        return lower_pointwise(kernel, opts)
    raise Unsupported(f"kernel kind {kernel.kind!r} (valid: pointwise, reduction, matmul)")
