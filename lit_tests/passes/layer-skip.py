# RUN: %PYTHON %s | filecheck %s
# layer-skip scores blocks on calibration inputs, so this test hands them over in a PassContext
# (fastc-opt has none to give: there the pass proposes nothing; see layer-skip.fx).
#
# Two residual blocks r = x + relu(x @ W); layers.1's W is 0, so its output equals its input
# (Block Influence 0) and it goes, at max_fraction=0.5 (1 of 2 blocks): the output reads the
# stream layers.0 left, and layers.1's ops and weight are erased.
import torch

from fastc.ir import parse_graph, print_graph
from fastc.passes import PassContext, make_pass
from fastc.passes.residual_blocks import find_blocks

GRAPH = """
graph @two_blocks(%x: f32[4, 2]) {
  %w0: f32[2, 2] = const dense<[1.0, -1.0, 0.5, 2.0]>
  %w1: f32[2, 2] = const dense<[0.0, 0.0, 0.0, 0.0]>
  %h0: f32[4, 2] = aten.mm.default(%x, %w0) {scope = "layers.0.fc" : "Linear"}
  %a0: f32[4, 2] = aten.relu.default(%h0) {scope = "layers.0.act" : "ReLU"}
  %r0: f32[4, 2] = aten.add.Tensor(%x, %a0) {scope = "layers.0" : "Residual"}
  %h1: f32[4, 2] = aten.mm.default(%r0, %w1) {scope = "layers.1.fc" : "Linear"}
  %a1: f32[4, 2] = aten.relu.default(%h1) {scope = "layers.1.act" : "ReLU"}
  %r1: f32[4, 2] = aten.add.Tensor(%r0, %a1) {scope = "layers.1" : "Residual"}
  %y: f32[4, 2] = aten.mul.Tensor(%r1, 2.0)
  return (%y,)
}
"""
batches = [[torch.randn(4, 2, generator=torch.Generator().manual_seed(i))] for i in range(2)]

gm = parse_graph(GRAPH)
for p in make_pass("layer-skip").propose(gm, PassContext(calibration_inputs=batches)):
    print(f"proposal: {p.what}, {p.weight_bytes_before} -> {p.weight_bytes_after} B")
# CHECK: proposal: layers.1 (Residual): influence 0, 16 -> 0 B
# CHECK-NOT: proposal:

print("rewrites:", make_pass("layer-skip").run(gm, PassContext(calibration_inputs=batches)))
gm.recompile()
print(print_graph(gm))
# CHECK: rewrites: 1
# CHECK-LABEL: graph @two_blocks
# CHECK:      %w0: f32[2, 2] = const
# CHECK-NOT:  %w1
# CHECK:      %r0: f32[4, 2] = aten.add.Tensor(%x, %a0) {scope = "layers.0" : "Residual"}
# CHECK-NEXT: %y: f32[4, 2] = aten.mul.Tensor(%r0, 2.0)
# CHECK-NEXT: return (%y,)

# Without inputs there is nothing to score with: the graph stays as it is.
gm = parse_graph(GRAPH)
print("without inputs:", make_pass("layer-skip").run(gm, PassContext()))
# CHECK: without inputs: 0

# max_fraction=1 offers both, least influential first; score=loss measures each removal.
for score in ("influence", "loss"):
    proposals = make_pass("layer-skip", {"max_fraction": "1", "score": score}).propose(
        parse_graph(GRAPH), PassContext(calibration_inputs=batches))
    print(score, [p.what.split(":")[0] for p in proposals])
# CHECK: influence ['layers.1 (Residual)', 'layers.0 (Residual)']
# CHECK: loss ['layers.1 (Residual)', 'layers.0 (Residual)']

# Not blocks: a layer whose output has another type than its input (4 -> 2 features; the weights are inputs here), and one
# without a residual add.
_, notes = find_blocks(parse_graph("""
graph @not_blocks(%x: f32[3, 4], %w: f32[4, 2], %v: f32[2, 2]) {
  %h0: f32[3, 2] = aten.mm.default(%x, %w) {scope = "layers.0.fc" : "Linear"}
  %a0: f32[3, 2] = aten.relu.default(%h0) {scope = "layers.0" : "Down"}
  %h1: f32[3, 2] = aten.mm.default(%a0, %v) {scope = "layers.1.fc" : "Linear"}
  %a1: f32[3, 2] = aten.relu.default(%h1) {scope = "layers.1" : "Plain"}
  return (%a1,)
}
"""))
print("\n".join(notes))
# CHECK: layers.0: its output a0: f32[3, 2] has the type of no input (x: f32[3, 4], w: f32[4, 2])
# CHECK: layers.1: no residual add of its input (a0) reaches its output a1
