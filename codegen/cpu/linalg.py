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


# Float ops that can combine a reduction's running value with the next element.
ACCUMULATING = frozenset({"arith.addf", "arith.mulf", "arith.maximumf", "arith.minimumf",
                          "arith.maxnumf", "arith.minnumf"})


def relax_float_math(module, context) -> int:
    """Lets LLVM reorder the accumulation of reductions, and nothing else; returns how many ops
    were marked.

    Eager PyTorch promises no order for the terms of a sum (ATen's own reductions are vectorized
    and split across threads), so the op that folds the next element into a reduction's running
    value gets `reassoc`: LLVM's loop vectorizer then keeps several partial sums. Every other float
    op stays strict IEEE arithmetic, as in eager: with `reassoc` on `x * 1000 * 1000` LLVM folds
    the constants into `x * 1e6`, which overflows float16 where eager does not, and `contract`
    would fuse `a * b + c` into an FMA that eager's pointwise kernels do not use.

    The accumulating op is the float add/mul/max/min of a reducing linalg op (a linalg.generic
    with a reduction iterator, or linalg.reduce) whose result is yielded into an output and whose
    operand is that output's block argument (the running value). This runs on torch-mlir's
    output, before linalg-fuse-elementwise-ops: producers fused into a reduction's body later
    are copied without flags, so they stay strict."""
    from torch_mlir import ir
    flags = ir.Attribute.parse("#arith.fastmath<reassoc>", context)
    marked = []

    def visit(op):
        if _is_reduction(op):
            marked.extend(_accumulators(op))
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
    for op in marked:
        op.attributes["fastmath"] = flags
    return len(marked)


def _is_reduction(op) -> bool:
    if op.name == "linalg.reduce":
        return True
    if op.name != "linalg.generic" or "iterator_types" not in op.attributes:
        return False
    return "reduction" in str(op.attributes["iterator_types"])


def _accumulators(op) -> list:
    """The ops of a reducing linalg op's body that combine an output's running value (its block
    argument) with another value and are yielded into that output."""
    from torch_mlir import ir
    if len(op.regions) != 1 or not op.regions[0].blocks:
        return []
    block = op.regions[0].blocks[0]
    ops = list(block.operations)
    if not ops or ops[-1].name != "linalg.yield":
        return []
    yielded = list(ops[-1].operands)
    args = list(block.arguments)
    outputs = len(op.results) or len(yielded)  # tensors: one result per output operand
    if outputs != len(yielded) or outputs > len(args):
        return []
    found = []
    for value, running in zip(yielded, args[len(args) - outputs:]):
        owner = value.owner
        if not isinstance(owner, (ir.Operation, ir.OpView)) or owner.name not in ACCUMULATING:
            continue
        if any(operand == running for operand in owner.operands):
            found.append(owner)
    return found
