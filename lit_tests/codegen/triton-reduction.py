# RUN: %PYTHON %s | filecheck %s
# A planned softmax over the last axis as Triton source. Looped: one online loop (running max and
# the sum of exp rescaled to it), then a loop that writes the normalised row; run against eager
# with rows longer than one block. Persistent: one pass, one load.
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
os.environ["FASTC_CACHE_DIR"] = "off"

import torch

from fastc.codegen.schedule import Schedule
from fastc.codegen.triton import lower
from fastc.ir import parse_graph
from fastc.ir.kernel_plan import KernelPlan

gm = parse_graph("""
graph @softmax(%x: f32[3, 50]) {
  %s: f32[3, 50] = aten.mul.Tensor(%x, 0.5) {kernel = 0, kind = "reduction"}
  %y: f32[3, 50] = aten._softmax.default(%s, -1, false) {kernel = 0, kind = "reduction"}
  return (%y,)
}""")
(kernel,) = KernelPlan.of(gm).kernels
generated = lower(kernel, gm, options={"persistent_max": 0})  # rows loop, whatever their length
print(generated.source)
x = torch.randn(3, 50)
(out,) = generated.run(x, schedule=Schedule(XBLOCK=2, RBLOCK=16))
print("matches eager:", torch.allclose(out, torch.softmax(x * 0.5, -1), atol=1e-6))
persistent = lower(kernel, gm)  # a row of 50 fits one block: one pass, one load
print(persistent.source)
(out,) = persistent.run(x)
print("persistent matches eager:", torch.allclose(out, torch.softmax(x * 0.5, -1), atol=1e-6))

# CHECK: def k0_reduction(in0_ptr, out0_ptr, in0_st0, in0_st1, xnumel, rnumel, XBLOCK: tl.constexpr, RBLOCK: tl.constexpr, INDEX_DTYPE: tl.constexpr):
# CHECK: xindex = xoffset + tl.arange(0, XBLOCK)[:, None]
# CHECK: [[MAX:acc[0-9]+]] = tl.full([XBLOCK, RBLOCK], float("-inf"), tl.float32)
# CHECK: [[SUM:acc[0-9]+_sum]] = tl.zeros([XBLOCK, RBLOCK], tl.float32)
# CHECK: for roffset in range(0, rnumel, RBLOCK):
# CHECK: [[NEW:tmp[0-9]+]] = tl.where(({{.*}} > [[MAX]]) | {{.*}}, [[MAX]])
# CHECK: [[SUM]] = [[SUM]] * {{.*}} + {{.*}}
# CHECK: [[MAX]] = [[NEW]]
# CHECK: [[BEST:best[0-9]+]] = tl.where({{.*}}, float("nan"), tl.max([[MAX]], 1)[:, None])
# CHECK: [[SUM]] = tl.sum({{.*}}[[SUM]] * tl.exp([[MAX]] - [[BEST]])), 1)[:, None]
# CHECK: for roffset in range(0, rnumel, RBLOCK):
# CHECK: - [[MAX]]
# CHECK: / [[SUM]]
# CHECK: tl.store(out0_ptr + {{.*}}, mask=xmask & rmask)
# CHECK-NOT: for roffset
# CHECK: matches eager: True
# CHECK: def k0_reduction(
# CHECK-NOT: for roffset
# CHECK: rindex = rbase
# CHECK: tl.load(
# CHECK-NOT: tl.load(
# CHECK: [[X:tmp[0-9]+]] = tl.where(xmask & rmask, {{.*}}, float("-inf"))
# CHECK: [[M:tmp[0-9]+]] = tl.where({{.*}}, float("nan"), tl.max([[X]], 1)[:, None])
# CHECK: - [[M]]
# CHECK: [[E:tmp[0-9]+]] = tl.where(xmask & rmask, {{.*}}, 0)
# CHECK: [[S:tmp[0-9]+]] = tl.sum([[E]], 1)[:, None]
# CHECK: / [[S]]
# CHECK: tl.store(out0_ptr + {{.*}}, mask=xmask & rmask)
# CHECK: persistent matches eager: True
