"""Native CPU code for planned kernels: torch-mlir (linalg on tensors) -> MLIR passes -> LLVM.

- `subgraph`: a kernel's ops as a standalone FX graph (what torch-mlir imports).
- `linalg`: that graph through torch-mlir's FX importer to linalg on tensors, plus the entry
  function in destination-passing style (memrefs over torch tensors' storage).
- `pipeline`: the MLIR pass pipeline down to the LLVM dialect, one readable list per schedule.
- `runtime`: the LLVM ExecutionEngine, the OpenMP runtime, memref descriptors over tensors.
- `compile_kernels(kernels, gm) -> {kernel id: NativeKernel}`: all of a graph's kernels in one
  module, so LLVM runs once per graph.
"""
from .build import NativeKernel, compile_kernels

__all__ = ["NativeKernel", "compile_kernels"]
