# RUN: %PYTHON %s | filecheck %s
# Float math on the native CPU target: only the op that folds the next element into a
# reduction's running value may be reordered (fastmath<reassoc>, so LLVM vectorizes the sum).
# Producers (the scale, softmax's subtract and divide) stay strict IEEE ops, as in eager:
# reassociating them folds x * 1000 * 1000 into x * 1e6, which overflows float16.
import os

os.environ["FASTC_CACHE_DIR"] = "off"

import torch

# One thread: the kernel is compiled whole (with more, a kernel independent along its rows is
# compiled at chunk size for the libgomp split: codegen/cpu/split.py; tests/codegen/test_cpu_parallel.py).
torch.set_num_threads(1)

from fastc.codegen.wrapper import compile_planned
from fastc.ir import parse_graph

gm = parse_graph("""
graph @scaled_sum(%x: f16[2, 4]) {
  %a: f16[2, 4] = aten.mul.Tensor(%x, 1000.0) {kernel = 0, kind = "reduction"}
  %b: f16[2, 4] = aten.mul.Tensor(%a, 1000.0) {kernel = 0, kind = "reduction"}
  %s: f16[2] = aten.sum.dim_IntList(%b, [1]) {kernel = 0, kind = "reduction"}
  return (%b, %s)
}""")
run, info = compile_planned(gm, "cpu", strict=True, choose="generated")
print(info.text())
print(info.sources["k0_reduction"])
x = torch.full((2, 4), 0.01, dtype=torch.float16)
b, s = run(x)
print("products:", b[0, 0].item(), "sums:", s.tolist())

# CHECK: 1 generated kernels (cpu), 0 run as ATen
# CHECK: func.func @k0_body
# CHECK-NOT: fastmath
# CHECK: iterator_types = ["parallel", "reduction"]
# CHECK-NEXT: ^bb0(%in: f16, %out: f16):
# CHECK-NEXT: arith.addf %in, %out fastmath<reassoc> : f16
# CHECK-NOT: fastmath
# CHECK: func.func @k0_reduction
# CHECK: products: 10000.0 sums: [40000.0, 40000.0]
