# RUN: %PYTHON %s | filecheck %s
# sparse-2to4 proposes nothing where no 2:4 kernel exists (weights on the CPU, as here; see
# sparse-2to4.fx). To show the rewrite, this test patches the pass's one refusal decision
# (semi_structured.kernel_refusal) to accept every weight, as tests/passes/test_sparse_2to4.py does.
import torch

from fastc.ir import parse_graph, print_graph
from fastc.kernels import semi_structured
from fastc.passes import PassContext, make_pass

# Every row of w is [1, -4, 3, 2] four times: by magnitude, -4 and 3 of each 4 stay.
ROW = ", ".join(["1.0, -4.0, 3.0, 2.0"] * 4)
GRAPH = f"""
graph @mlp(%x: f32[2, 16]) {{
  %w: f32[16, 16] = const dense<[{", ".join([ROW] * 16)}]>
  %b: f32[16] = const dense<[{", ".join(["0.5"] * 16)}]>
  %t: f32[16, 16] = aten.permute.default(%w, [1, 0])
  %h: f32[2, 16] = aten.addmm.default(%b, %x, %t) {{scope = "fc1" : "Linear"}}
  %r: f32[2, 16] = aten.relu.default(%h)
  %y: f32[2, 16] = aten.mm.default(%r, %t) {{scope = "fc2" : "Linear"}}
  return (%y,)
}}
"""

# On the CPU: refused, one note for the graph.
print("notes:", make_pass("sparse-2to4").propose(parse_graph(GRAPH), PassContext()).notes)
# CHECK: notes: ["weights on cpu: 2:4 semi-structured sparsity needs a kernel for it, which exists only on CUDA {{.*}}; 2 matched products left as they are"]

semi_structured.kernel_refusal = lambda weight: None
gm = parse_graph(GRAPH)
for p in make_pass("sparse-2to4").propose(gm, PassContext()):
    print(f"proposal: {p.what}, sensitivity {p.sensitivity:.4f}, {p.weight_bytes_before} -> {p.weight_bytes_after} B")
    p.apply(gm)
gm.recompile()
# Without inputs the scores are magnitudes and the sensitivity ||dW||^2 / ||W||^2 = 5 / 30.
# CHECK: proposal: fc1 (h): 2:4 sparse, magnitude scores (no calibration or example inputs), sensitivity 0.1667, 1024 -> 1024 B
# CHECK: proposal: fc2 (y): 2:4 sparse, magnitude scores (no calibration or example inputs), sensitivity 0.1667, 1024 -> 1024 B

# Each product becomes fastc.linear_2to4 on its own masked (out, in) constant; the weight both
# read and its transpose go. The text form parses back to the same graph.
text = print_graph(gm, inline_limit=1000)
print(text)
# CHECK-LABEL: graph @mlp
# CHECK: %w_2to4: f32[16, 16] = const dense<[0.0, -4.0, 3.0, 0.0, 0.0, -4.0, 3.0, 0.0,
# CHECK: %h_2to4: f32[2, 16] = fastc.linear_2to4.default(%x, %w_2to4, %b) {scope = "fc1" : "Linear"}
# CHECK: %r: f32[2, 16] = aten.relu.default(%h_2to4)
# CHECK: %w_2to4_1: f32[16, 16] = const dense<[0.0, -4.0, 3.0, 0.0,
# CHECK: %y_2to4: f32[2, 16] = fastc.linear_2to4.default(%r, %w_2to4_1, none) {scope = "fc2" : "Linear"}
# CHECK-NOT: %w:
# CHECK-NOT: permute
# CHECK: return (%y_2to4,)
again = parse_graph(text)
print("round trip:", print_graph(again, inline_limit=1000) == text)
x = torch.randn(2, 16)
print("same values:", torch.equal(again(x)[0], gm(x)[0]))
# CHECK: round trip: True
# CHECK: same values: True
