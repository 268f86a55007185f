# RUN: %fastc-opt -p 'layer-skip' %s | filecheck %s
# RUN: not %fastc-opt -p 'layer-skip{max_fraction=2}' %s 2>&1 | filecheck %s --check-prefix=FRACTION
# RUN: not %fastc-opt -p 'layer-skip{score=bi}' %s 2>&1 | filecheck %s --check-prefix=SCORE

# FRACTION: fastc-opt: error: pass 'layer-skip': option max_fraction=2.0 is not valid (expected a number in [0, 1])
# SCORE: fastc-opt: error: pass 'layer-skip': option score='bi' is not valid (expected one of influence, loss)

# fastc-opt has no inputs to score the blocks on: the pass proposes nothing and the graph stays
# as it is (layer-skip.py runs it with calibration inputs and checks which block goes).
# CHECK-LABEL: graph @two_blocks
# CHECK: %r0: f32[4, 2] = aten.add.Tensor(%x, %a0) {scope = "layers.0" : "Residual"}
# CHECK: %r1: f32[4, 2] = aten.add.Tensor(%r0, %a1) {scope = "layers.1" : "Residual"}
# CHECK: return (%r1,)
graph @two_blocks(%x: f32[4, 2]) {
  %w0: f32[2, 2] = const dense<[1.0, -1.0, 0.5, 2.0]>
  %w1: f32[2, 2] = const dense<[0.0, 0.0, 0.0, 0.0]>
  %h0: f32[4, 2] = aten.mm.default(%x, %w0) {scope = "layers.0.fc" : "Linear"}
  %a0: f32[4, 2] = aten.relu.default(%h0) {scope = "layers.0.act" : "ReLU"}
  %r0: f32[4, 2] = aten.add.Tensor(%x, %a0) {scope = "layers.0" : "Residual"}
  %h1: f32[4, 2] = aten.mm.default(%r0, %w1) {scope = "layers.1.fc" : "Linear"}
  %a1: f32[4, 2] = aten.relu.default(%h1) {scope = "layers.1.act" : "ReLU"}
  %r1: f32[4, 2] = aten.add.Tensor(%r0, %a1) {scope = "layers.1" : "Residual"}
  return (%r1,)
}
