# RUN: %fastc-opt --split-input-file -p fold-constants,dead-code %s | filecheck %s
# RUN: %fastc-opt --split-input-file -p 'fold-constants{max_new_elements=2},dead-code' %s | filecheck %s --check-prefix=SMALL

# A transpose and a scale over a constant weight are computed once.
# CHECK-LABEL: graph @weight_transpose
# CHECK: %folded_s: f32[3, 2] = const dense<[2.0, 8.0, 4.0, 10.0, 6.0, 12.0]>
# CHECK-NEXT: %y: f32[5, 2] = aten.mm.default(%x, %folded_s)
graph @weight_transpose(%x: f32[5, 3]) {
  %w: f32[2, 3] = const dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]>
  %t: f32[3, 2] = aten.permute.default(%w, [1, 0])
  %s: f32[3, 2] = aten.mul.Scalar(%t, 2.0)
  %y: f32[5, 2] = aten.mm.default(%x, %s)
  return (%y,)
}

# -----
# An expand that would grow a constant beyond max_new_elements stays an op.
# SMALL-LABEL: graph @no_growth
# SMALL: aten.expand.default
# CHECK-LABEL: graph @no_growth
# CHECK-NOT: aten.expand.default
graph @no_growth(%x: f32[4, 3]) {
  %b: f32[3] = const dense<[1.0, 2.0, 3.0]>
  %e: f32[4, 3] = aten.expand.default(%b, [4, 3])
  %y: f32[4, 3] = aten.add.Tensor(%x, %e)
  return (%y,)
}

# -----
# Ops that read graph inputs are not folded.
# CHECK-LABEL: graph @reads_input
# CHECK: aten.add.Tensor(%x, %w)
graph @reads_input(%x: f32[2]) {
  %w: f32[2] = const dense<[1.0, 2.0]>
  %y: f32[2] = aten.add.Tensor(%x, %w)
  return (%y,)
}
