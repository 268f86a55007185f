"""Stage 05-combined: the kernels of one build as one MLIR module, so LLVM runs once per graph.

A kernel reaches a build as text (`KernelCode`): its body module printed after the fix-ups, and
its entry function's text. Text, because a build runs in an MLIR context of its own (each build
collects its own diagnostics, and a schedule may be built later, on demand, from another thread),
and MLIR operations cannot move between contexts: the body is printed in the import's context and
parsed again in the build's. Combining is then done on IR: the ops of each parsed body are moved
into the combined module (its function made private: only the entry functions are called from
outside, and `inline` may drop a body once inlined), and each entry function is parsed and moved
in after the bodies.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KernelCode:
    """One kernel's MLIR as builds take it: its body module (linalg on tensors, fixed up) and its
    entry function (entry.py), both as text."""
    name: str
    body: str
    entry: str
    # A kernel split by rows (split.py): LLVM-dialect functions added after lowering
    # (gomp.trampoline: its serial entry, running the chunks one after the other, and its parallel
    # one, running them on torch's OpenMP threads), and what ExecutionEngine.raw_lookup takes for
    # each. Empty / None for a kernel built whole.
    trampoline: str = ""
    symbol: str | None = None
    parallel_symbol: str | None = None

    @property
    def source(self) -> str:
        """What a reader is shown as the kernel's code (info.sources, kernel_<name>.mlir)."""
        return self.body + "\n" + self.entry


def combine(kernels: list[KernelCode], context):
    """One module in `context`: every kernel's body ops, then every entry function."""
    from torch_mlir import ir
    combined = ir.Module.create(ir.Location.unknown(context))
    private = ir.StringAttr.get("private", context)
    entries = []
    for code in kernels:
        body = ir.Module.parse(code.body, context)
        declarations = []
        for op in list(body.body.operations):
            if op.operation.name == "func.func":
                op.attributes["sym_visibility"] = private
                declarations.append(f"func.func private @{ir.StringAttr(op.attributes['sym_name']).value}"
                                    f"{ir.TypeAttr(op.attributes['function_type']).value}")
            combined.body.append(op)
        entries.append(_parsed_entry(code.entry, declarations, context))
    for entry in entries:
        combined.body.append(entry)
    return combined


def _parsed_entry(entry: str, declarations: list[str], context):
    """The entry function op parsed from its text. The parser verifies what it parses, and the
    entry calls its body: the text is parsed next to a declaration of the body, then moved out."""
    from torch_mlir import ir
    scope = ir.Module.parse("\n".join(declarations) + "\n" + entry, context)
    op = list(scope.body.operations)[-1]
    op.detach_from_parent()  # outlives `scope`
    return op
