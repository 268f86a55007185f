# RUN: %PYTHON %s | filecheck %s
# A planned pointwise kernel (add with a broadcast row, relu, a cast to f16) as Triton source:
# one @triton.jit, strides as arguments, fp32 compute, one masked store; then run against eager.
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["FASTC_CACHE_DIR"] = "off"

import torch

from fastc.codegen.wrapper import compile_planned
from fastc.ir import parse_graph

gm = parse_graph("""
graph @bias_relu(%x: f32[4, 6], %b: f32[6]) {
  %a: f32[4, 6] = aten.add.Tensor(%x, %b) {kernel = 0, kind = "pointwise"}
  %r: f32[4, 6] = aten.relu.default(%a) {kernel = 0, kind = "pointwise"}
  %h: f16[4, 6] = aten._to_copy.default(%r, dtype=torch.float16) {kernel = 0, kind = "pointwise"}
  return (%h,)
}""")
run, info = compile_planned(gm)
print(info.sources["k0_pointwise"])
x, b = torch.randn(4, 6), torch.randn(6)
(out,) = run(x, b)
print("matches eager:", torch.equal(out, torch.relu(x + b).half()))

# CHECK: @triton.jit
# CHECK-NEXT: def k0_pointwise(in0_ptr, in1_ptr, out0_ptr, in0_st0, in0_st1, in1_st0, xnumel, XBLOCK: tl.constexpr, INDEX_DTYPE: tl.constexpr):
# CHECK: xindex = xoffset + tl.arange(0, XBLOCK)
# CHECK: x0 = (xindex // 6)
# CHECK: x1 = (xindex % 6)
# CHECK: tl.load(in0_ptr + ((in0_st0 * x0) + (in0_st1 * x1)), mask=xmask, other=0)
# CHECK: tl.load(in1_ptr + (in1_st0 * x1), mask=xmask, other=0)
# CHECK: tl.where({{.*}} < 0, 0, {{.*}})
# CHECK: tl.store(out0_ptr + xindex, {{.*}}.to(tl.float16), mask=xmask)
# CHECK-NOT: @triton.jit
# CHECK: matches eager: True
