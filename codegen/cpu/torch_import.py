"""Stages 02-torch and 03-linalg: a kernel's FX graph through torch-mlir, to the torch dialect
(its FX importer) and then to linalg on tensors (its backend pipelines, listed in stages.py).

torch-mlir reports an op it cannot lower as an error diagnostic (and its own pipeline runner
would print a repro file to /tmp and the reason to stderr); here a diagnostic handler keeps the
first error, which becomes the Unsupported reason the kernel runs as ATen with.
"""
from __future__ import annotations

import contextlib
import re

from ..errors import Unsupported


def import_fx(gm, name: str, context):
    """The torch-dialect module of FX graph `gm` (in `context`), its function named `name`."""
    from torch_mlir.extras.fx_importer import FxImporter
    with _errors_as_unsupported(context):
        importer = FxImporter(context=context)
        importer.import_stateless_graph(gm.graph, func_name=name)
    return importer.module


def lower_to_linalg(module, pipelines: list[str]):
    """`module` (torch dialect) lowered in place to linalg on tensors by torch-mlir's `pipelines`."""
    from torch_mlir.passmanager import PassManager
    context = module.context
    with _errors_as_unsupported(context) as errors, context:
        context.emit_error_diagnostics = True  # passes may report errors without failing
        for pipeline in pipelines:
            PassManager.parse(pipeline).run(module.operation)
            if errors:
                break
    return module


@contextlib.contextmanager
def _errors_as_unsupported(context):
    """Collects the error diagnostics of `context` (and an exception) meanwhile; raises
    Unsupported with the first when there is one."""
    from torch_mlir import ir
    errors: list[str] = []

    def on_diagnostic(d) -> bool:
        if d.severity == ir.DiagnosticSeverity.ERROR:
            errors.append(str(d.message))
        return True
    handler = context.attach_diagnostic_handler(on_diagnostic)
    try:
        yield errors
    except Exception as e:  # noqa: BLE001 - torch-mlir reports unsupported ops as errors
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        handler.detach()
    if errors:
        raise Unsupported(f"torch-mlir: {_reason(errors[0])}")


def _reason(message: str) -> str:
    """torch-mlir's error, short: an op with no lowering is named."""
    op = re.search(r'name = "torch\.(aten\.[\w.]+)"', message)
    if op and "failed to legalize" in message:
        return f"no lowering for {op.group(1)}"
    return (message.strip().splitlines() or [""])[0][:300]
