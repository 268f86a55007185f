# RUN: %PYTHON %s | filecheck %s
# A planned reduction kernel (scale, softmax over the last axis) on the native CPU target:
# torch-mlir's linalg body, the destination-passing entry function over memrefs, the vector
# exp helper; then run against eager.
import os

os.environ["FASTC_CACHE_DIR"] = "off"

import torch

# One thread: the kernel is compiled whole (with more, a kernel independent along its rows is
# compiled at chunk size for the libgomp split: codegen/cpu/split.py; tests/codegen/test_cpu_parallel.py).
torch.set_num_threads(1)

from fastc.codegen.wrapper import compile_planned
from fastc.ir import parse_graph

gm = parse_graph("""
graph @scaled_softmax(%x: f32[4, 6]) {
  %s: f32[4, 6] = aten.mul.Tensor(%x, 0.5) {kernel = 0, kind = "reduction"}
  %y: f32[4, 6] = aten._softmax.default(%s, -1, false) {kernel = 0, kind = "reduction"}
  return (%y,)
}""")
run, info = compile_planned(gm, "cpu", strict=True, choose="generated")
print(info.text())
print(info.sources["k0_reduction"])
x = torch.randn(4, 6)
(out,) = run(x)
print("matches eager:", torch.allclose(out, torch.softmax(x * 0.5, -1), atol=1e-6))

# CHECK: func.func @k0_body(%arg0: tensor<4x6xf32>) -> tensor<4x6xf32>
# CHECK: linalg.generic
# CHECK: math.exp
# CHECK: linalg.generic
# CHECK: func.func @k0_reduction(%a0: memref<4x6xf32> {llvm.noalias}, %o0: memref<4x6xf32> {llvm.noalias}) attributes {llvm.emit_c_interface}
# CHECK-NEXT: %t0 = bufferization.to_tensor %a0 restrict : memref<4x6xf32> to tensor<4x6xf32>
# CHECK-NEXT: %r:1 = func.call @k0_body(%t0)
# CHECK-NEXT: bufferization.materialize_in_destination %r#0 in restrict writable %o0
# CHECK: matches eager: True
