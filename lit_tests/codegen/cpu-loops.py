# RUN: %PYTHON %s | filecheck %s
# Stage 07-loops (codegen/cpu/tiling.py) on a layer norm's linalg: under a tiled, vectorizing
# schedule the root is tile-and-fused (one loop over rows, the mean and variance reductions
# inside it on a row each) and vectorized; under the plain schedule the module is untouched.
# Then the scheduled build runs against eager.
import os

os.environ["FASTC_CACHE_DIR"] = "off"

import torch

torch.set_num_threads(1)

from fastc.codegen.cpu.candidate_mlir import scheduled_text
from fastc.codegen.wrapper import compile_planned
from fastc.ir import parse_graph
from fastc.ir.schedule import Schedule

gm = parse_graph("""
graph @norm(%x: f32[6, 32], %w: f32[32], %b: f32[32]) {
  %y: f32[6, 32] = aten.layer_norm.default(%x, [32], %w, %b, 1e-05) {kernel = 0, kind = "reduction"}
  return (%y,)
}""")
run, info = compile_planned(gm, "cpu", strict=True, choose="generated")
native = next(iter(run.generated.values()))
code = native.split.code()
plain = Schedule(XBLOCK=0)
tiled = Schedule(XBLOCK=0, tile_outer=1, tile_inner=8, vectorize=True)
print("plain has loops:", "scf.for" in scheduled_text(code, plain))
print(scheduled_text(code, tiled))
x, w, b = torch.randn(6, 32), torch.randn(32), torch.randn(32)
expected = torch.nn.functional.layer_norm(x, [32], w, b)
(out,) = native.run(x, w, b, schedule=tiled)
print("tiled matches eager:", torch.allclose(out, expected, atol=1e-5))

# CHECK: plain has loops: False
# CHECK: scf.for %{{.*}} = %c0 to %c6 step %c1
# CHECK: vector.transfer_read
# CHECK: vector.reduction <add>
# CHECK: vector.transfer_write
# CHECK: tiled matches eager: True
