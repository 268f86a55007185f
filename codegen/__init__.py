"""fastc code generation: planned kernels (fastc.ir.kernel_plan) to Triton source, and the
wrapper that runs a planned graph (ATen for unmarked ops, generated kernels for the rest).

- `errors.Unsupported`: raised by a lowering that cannot handle a kernel; the wrapper falls back.
- `schedule`: block sizes, warps and stages, chosen apart from the lowering (legality) code.
- `cache`: compiled kernels once per process; generated kernels on disk (FASTC_CACHE_DIR).
- `triton`: `lower(kernel, gm) -> GeneratedKernel` (pointwise, reduction, matmul).
- `wrapper`: `compile_planned(gm, target) -> (callable, info)`.

Importing this package does not import triton: `wrapper.compile_planned` decides whether the
interpreter is needed before triton is first imported.
"""
from .errors import Unsupported

__all__ = ["Unsupported"]
