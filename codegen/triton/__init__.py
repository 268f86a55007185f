"""Triton code generation for planned kernels: `lower(kernel, gm) -> GeneratedKernel`.

One template per kernel kind (pointwise.py, reduction.py, matmul.py) over a shared kernel body
(values.py: loads, views, the pointwise op table). Lowering produces a KernelSpec (source plus
launch data, spec.py), cached on disk by kernel text; launcher.py runs it.
"""
from __future__ import annotations

import os

from ..cache import load_spec, spec_key, store_spec
from ..errors import Unsupported
from .kernel_text import kernel_text
from .launcher import GeneratedKernel
from .options import LowerOptions
from .spec import KernelSpec, graph_bindings

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
    from .matmul import lower_matmul
    from .pointwise import lower_pointwise
    from .reduction import has_reduction, lower_reduction
    opts = LowerOptions.of(options)
    if kernel.kind == "matmul":
        return lower_matmul(kernel, opts)
    if kernel.kind == "reduction" or has_reduction(kernel):
        if not has_reduction(kernel):
            return lower_pointwise(kernel, opts)
        return lower_reduction(kernel, opts)
    if kernel.kind == "pointwise":
        return lower_pointwise(kernel, opts)
    raise Unsupported(f"kernel kind {kernel.kind!r} (valid: pointwise, reduction, matmul)")
