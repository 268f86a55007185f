"""A kernel's graph through torch-mlir to linalg on tensors, and its entry function.

torch-mlir's lowering gives `func @body(tensors...) -> tensors`. The entry function fastc calls
takes memrefs instead, one per input and one per output (destination-passing style), so a
kernel reads torch tensors' storage in place and writes into outputs the caller allocated:

    func @k3(%a0: memref<?x?xf32>, %a1: memref<?xf32, strided<[?], offset: ?>>, %o0: memref<?x?xf32>) {
      %t0 = bufferization.to_tensor %a0 restrict : ...
      %r:1 = func.call @k3_body(%t0, %t1) : ...
      bufferization.materialize_in_destination %r#0 in restrict writable %o0 : ...
    }

An input whose example is contiguous gets an identity layout (unit inner stride, which LLVM
vectorizes); any other input a fully dynamic strided layout, so no input is ever copied to match.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from ..errors import Unsupported

# Torch dtypes the native target handles, by MLIR element type.
ELEMENT_TYPES = {
    torch.float32: "f32", torch.float64: "f64", torch.float16: "f16", torch.bfloat16: "bf16",
    torch.int64: "i64", torch.int32: "i32", torch.int16: "i16", torch.int8: "i8", torch.uint8: "i8",
    torch.bool: "i1",
}


@dataclass(frozen=True)
class Param:
    """One argument of an entry function: a tensor (memref) or a scalar."""
    kind: str            # "tensor" | "int" | "float" | "bool"
    rank: int = 0
    contiguous: bool = True
    strides: tuple | None = None   # a non-contiguous layout known when compiling (static sizes)

    def memref(self, tensor_type: str) -> str:
        inner = tensor_type[len("tensor<"):-1]
        if self.contiguous or self.rank == 0:
            return f"memref<{inner}>"
        if self.strides is not None:  # static strides: LLVM sees unit inner strides, folds addresses
            return f"memref<{inner}, strided<[{', '.join(map(str, self.strides))}]>>"
        return f"memref<{inner}, strided<[{', '.join(['?'] * self.rank)}], offset: ?>>"


def import_kernel(graph_module, name: str, context):
    """torch-mlir's linalg-on-tensors module for `graph_module` (in `context`), its function
    named `name`. Raises Unsupported with torch-mlir's reason when an op does not lower."""
    from torch_mlir import ir
    from torch_mlir.extras.fx_importer import FxImporter
    from torch_mlir.passmanager import PassManager
    # torch-mlir's own pipeline runner prints the repro IR to a file in /tmp on every failure
    # and its reason to stderr; a diagnostic handler keeps the reason for the fallback instead.
    errors: list[str] = []

    def on_diagnostic(d) -> bool:
        if d.severity == ir.DiagnosticSeverity.ERROR:
            errors.append(str(d.message))
        return True
    handler = context.attach_diagnostic_handler(on_diagnostic)
    importer = FxImporter(context=context)
    try:
        importer.import_stateless_graph(graph_module.graph, func_name=name)
        with context:
            context.emit_error_diagnostics = True  # passes may report errors without failing
            for pipeline in TORCH_MLIR_PIPELINES:
                PassManager.parse(pipeline).run(importer.module.operation)
                if errors:
                    break
    except Exception as e:  # noqa: BLE001 - torch-mlir reports unsupported ops as errors
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        handler.detach()
    if errors:
        raise Unsupported(f"torch-mlir: {_reason(errors[0])}")
    return importer.module


# torch-mlir's FX import path (torch_mlir.fx.export_and_import, then lowering to linalg).
TORCH_MLIR_PIPELINES = (
    "builtin.module(func.func(torch-match-quantized-custom-ops), "
    "torchdynamo-export-to-torch-backend-pipeline{ extra-library=})",
    "builtin.module(torch-backend-to-linalg-on-tensors-backend-pipeline{allow-non-finites=True})",
)


def _reason(message: str) -> str:
    """torch-mlir's error, short: an op with no lowering is named."""
    op = re.search(r'name = "torch\.(aten\.[\w.]+)"', message)
    if op and "failed to legalize" in message:
        return f"no lowering for {op.group(1)}"
    return (message.strip().splitlines() or [""])[0][:300]


def entry_function(name: str, body: str, func_type, params: list[Param], out_params: list[Param]) -> str:
    """Text of the entry function `name` calling `body` (see the module docstring)."""
    in_types = [str(t) for t in func_type.inputs]
    out_types = [str(t) for t in func_type.results]
    if len(in_types) != len(params) or len(out_types) != len(out_params):
        raise Unsupported(f"torch-mlir changed the kernel's signature ({len(in_types)} inputs, "
                          f"{len(out_types)} results; expected {len(params)}, {len(out_params)})")
    args, lines, call_args = [], [], []
    for i, (t, p) in enumerate(zip(in_types, params)):
        if t.startswith("tensor<"):
            args.append(f"%a{i}: {p.memref(t)} {{llvm.noalias}}")
            lines.append(f"    %t{i} = bufferization.to_tensor %a{i} restrict : {p.memref(t)} to {t}")
            call_args.append(f"%t{i}")
        else:
            args.append(f"%a{i}: {t}")
            call_args.append(f"%a{i}")
    for i, (t, p) in enumerate(zip(out_types, out_params)):
        if not t.startswith("tensor<"):
            raise Unsupported(f"kernel output of type {t} (only tensors)")
        args.append(f"%o{i}: {p.memref(t)} {{llvm.noalias}}")
    results = f"%r:{len(out_types)} = " if out_types else ""
    lines.append(f"    {results}func.call @{body}({', '.join(call_args)}) : "
                 f"({', '.join(in_types)}) -> ({', '.join(out_types)})")
    for i, (t, p) in enumerate(zip(out_types, out_params)):
        lines.append(f"    bufferization.materialize_in_destination %r#{i} in restrict writable %o{i} : "
                     f"({t}, {p.memref(t)}) -> ()")
    return (f"  func.func @{name}({', '.join(args)}) attributes {{llvm.emit_c_interface}} {{\n"
            + "\n".join(lines) + "\n    return\n  }\n")


FLOAT_ARITH = re.compile(r"^arith\.(addf|subf|mulf|divf|maximumf|minimumf|maxnumf|minnumf|negf|remf)$")


def relax_float_math(module, context) -> None:
    """Lets LLVM reassociate float adds and multiplies (vectorized sums, as ATen's own reductions
    do) and contract them into FMAs. NaN and infinity semantics are kept."""
    from torch_mlir import ir
    flags = ir.Attribute.parse("#arith.fastmath<reassoc,contract>", context)

    def visit(op):
        if FLOAT_ARITH.match(op.name):
            op.attributes["fastmath"] = flags
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
