"""Native CPU code for planned kernels: torch-mlir (linalg on tensors) -> MLIR passes -> LLVM.

`stages.py` lists every stage from a planned kernel to machine code, in order, and is where to
start reading; `build.py` (`compile_kernels(kernels) -> ({kernel id: NativeKernel}, fallbacks)`)
decides which kernels are built together and under which schedules; `native_kernel.py` runs one.
"""
from .build import compile_kernels
from .native_kernel import NativeKernel

__all__ = ["NativeKernel", "compile_kernels"]
