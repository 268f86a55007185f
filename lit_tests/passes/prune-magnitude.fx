# RUN: %fastc-opt --split-input-file -p 'prune-magnitude{fraction=0.5}' %s | filecheck %s
# RUN: %fastc-opt --split-input-file -p 'prune-magnitude{fraction=0.0}' %s | filecheck %s --check-prefix=NONE
# RUN: not %fastc-opt -p 'prune-magnitude{fraction=1.5}' %s 2>&1 | filecheck %s --check-prefix=RANGE

# NONE-NOT: _pruned
# RANGE: fastc-opt: error: pass 'prune-magnitude': option fraction=1.5 is not valid (expected a number in [0, 1])

# A Linear weight read through a transpose: its 3 smallest-|w| entries become 0; the bias is
# not a weight and stays.
# CHECK-LABEL: graph @linear
# CHECK: %w_pruned: f32[2, 3] = const dense<[0.0, 0.0, 3.0, -4.0, 0.0, 6.0]>
# CHECK: %b: f32[2] = const dense<[0.5, -0.25]>
# CHECK: %t: f32[3, 2] = aten.permute.default(%w_pruned, [1, 0])
# CHECK: aten.addmm.default(%b, %x, %t)
graph @linear(%x: f32[4, 3]) {
  %w: f32[2, 3] = const dense<[1.0, -2.0, 3.0, -4.0, 0.5, 6.0]>
  %b: f32[2] = const dense<[0.5, -0.25]>
  %t: f32[3, 2] = aten.permute.default(%w, [1, 0])
  %y: f32[4, 2] = aten.addmm.default(%b, %x, %t)
  return (%y,)
}

# -----
# A convolution kernel and an embedding table are weights, each pruned on its own; a constant
# that only scales (not read by a matrix product, convolution or embedding) is not.
# CHECK-LABEL: graph @conv_and_embedding
# CHECK: %k_pruned: f32[2, 1, 1, 1] = const dense<[0.0, -3.0]>
# CHECK: %scale: f32[2, 1, 1] = const dense<[0.25, 4.0]>
# CHECK: %table_pruned: f32[2, 2] = const dense<[0.0, 0.0, 7.0, -8.0]>
graph @conv_and_embedding(%x: f32[1, 1, 2, 2], %ids: i64[3]) {
  %k: f32[2, 1, 1, 1] = const dense<[2.0, -3.0]>
  %scale: f32[2, 1, 1] = const dense<[0.25, 4.0]>
  %table: f32[2, 2] = const dense<[1.0, 1.5, 7.0, -8.0]>
  %c: f32[1, 2, 2, 2] = aten.convolution.default(%x, %k, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %s: f32[1, 2, 2, 2] = aten.mul.Tensor(%c, %scale)
  %e: f32[3, 2] = aten.embedding.default(%table, %ids)
  return (%s, %e)
}
