"""The entry function of a kernel: what fastc calls, in destination-passing style.

torch-mlir's lowering gives `func @body(tensors...) -> tensors`. The entry function takes
memrefs instead, one per input and one per output, so a kernel reads torch tensors' storage in
place and writes into outputs the caller allocated:

    func @k3(%a0: memref<?x?xf32>, %a1: memref<?xf32, strided<[?], offset: ?>>, %o0: memref<?x?xf32>) {
      %t0 = bufferization.to_tensor %a0 restrict : ...
      %r:1 = func.call @k3_body(%t0, %t1) : ...
      bufferization.materialize_in_destination %r#0 in restrict writable %o0 : ...
    }

An input whose example is contiguous gets an identity layout (unit inner stride, which LLVM
vectorizes); any other input a fully dynamic strided layout, or its strides when they are numbers
(`Param.memref`), so no input is ever copied to match.

The function is written from this template, naming its values after the parameters (%a0, %o0),
and is what a kernel's dumped source shows; the combined stage parses it into the build's module.
"""
from __future__ import annotations

from ..errors import Unsupported
from .params import Param


def entry_function(name: str, body: str, func_type, params: list[Param], out_params: list[Param]) -> str:
    """Text of the entry function `name` calling `body`, whose function type is `func_type`."""
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
