# RUN: %PYTHON %s | filecheck %s
# A planned linear layer (addmm with a transposed weight) with a GELU epilogue as Triton source:
# a K loop of tl.dot into an fp32 accumulator, the bias and activation applied to the tile.
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["FASTC_CACHE_DIR"] = "off"

import torch
import torch.nn.functional as F

from fastc.codegen.wrapper import compile_planned
from fastc.ir import parse_graph

gm = parse_graph("""
graph @linear_gelu(%x: f32[5, 20], %w: f32[7, 20], %b: f32[7]) {
  %t: f32[20, 7] = aten.permute.default(%w, [1, 0]) {kernel = 0, kind = "matmul"}
  %y: f32[5, 7] = aten.addmm.default(%b, %x, %t) {kernel = 0, kind = "matmul"}
  %g: f32[5, 7] = aten.gelu.default(%y) {kernel = 0, kind = "matmul"}
  return (%g,)
}""")
run, info = compile_planned(gm)
print(info.sources["k0_matmul"])
x, w, b = torch.randn(5, 20), torch.randn(7, 20), torch.randn(7)
(out,) = run(x, w, b)
print("matches eager:", torch.allclose(out, F.gelu(F.linear(x, w, b)), atol=1e-5))

# CHECK: def k0_matmul(
# CHECK-NEXT: # in0: %w f32[7, 20]
# CHECK-NEXT: # in1: %b f32[7]
# CHECK-NEXT: # in2: %x f32[5, 20]
# CHECK-NEXT: # out0: %g f32[5, 7]
# CHECK: acc = tl.zeros([BLOCK_M, BLOCK_N], tl.float32)
# CHECK: for koffset in range(0, K, BLOCK_K):
# CHECK: tl.load(in2_ptr + ((in2_st0 * mindex) + (in2_st1 * ka)), mask=kamask & mmask, other=0)
# CHECK: tl.load(in0_ptr + ((in0_st0 * nindex) + (in0_st1 * kb)), mask=kbmask & nmask, other=0)
# CHECK: acc = tl.dot(a, b, acc, input_precision="ieee")
# CHECK: tl.load(in1_ptr + (in1_st0 * nindex), mask=nmask, other=0)
# CHECK: tl.erf(
# CHECK: tl.store(out0_ptr + {{.*}}, mask=mmask & nmask)
# CHECK: matches eager: True
