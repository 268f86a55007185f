# RUN: %fastc-opt --split-input-file -p fuse-product-epilogues %s | filecheck %s

# A convolution, the residual add after it and the activation after that: one op.
# CHECK-LABEL: graph @conv_add_relu
# CHECK-NEXT: %w: f32[2, 2, 1, 1] = const
# CHECK-NEXT: %b: f32[2] = const
# CHECK-NEXT: %c_act: f32[1, 2, 3, 3] = fastc.conv2d_act.default(%x, %w, %b, [1, 1], [0, 0], [1, 1], 1, %r, "relu", [], false)
# CHECK-NEXT: return (%c_act,)
graph @conv_add_relu(%x: f32[1, 2, 3, 3], %r: f32[1, 2, 3, 3]) {
  %w: f32[2, 2, 1, 1] = const dense<[1.0, 0.5, -0.5, 2.0]>
  %b: f32[2] = const dense<[0.25, -0.25]>
  %c: f32[1, 2, 3, 3] = aten.convolution.default(%x, %w, %b, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %a: f32[1, 2, 3, 3] = aten.add.Tensor(%c, %r)
  %y: f32[1, 2, 3, 3] = aten.relu.default(%a)
  return (%y,)
}

# -----
# relu6 (hardtanh 0..6) after a depthwise convolution whose only reader is another convolution:
# the first may return its result channels-last (any_layout = true), the second may not (the
# graph's output reads it).
# CHECK-LABEL: graph @depthwise_chain
# CHECK: %c1_act: f32[1, 2, 3, 3] = fastc.conv2d_act.default(%x, %dw, none, [1, 1], [1, 1], [1, 1], 2, none, "hardtanh", [0.0, 6.0], true)
# CHECK: %c2_act: f32[1, 2, 3, 3] = fastc.conv2d_act.default(%c1_act, %pw, none, [1, 1], [0, 0], [1, 1], 1, none, "none", [], false)
# CHECK-NOT: aten.
graph @depthwise_chain(%x: f32[1, 2, 3, 3]) {
  %dw: f32[2, 1, 3, 3] = const dense<[1.0, 0.0, -1.0, 0.5, 0.0, -0.5, 0.25, 0.0, -0.25, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, -1.0, -1.0, -1.0]>
  %pw: f32[2, 2, 1, 1] = const dense<[1.0, 0.5, -0.5, 2.0]>
  %c1: f32[1, 2, 3, 3] = aten.convolution.default(%x, %dw, none, [1, 1], [1, 1], [1, 1], false, [0, 0], 2)
  %h: f32[1, 2, 3, 3] = aten.hardtanh.default(%c1, 0.0, 6.0)
  %c2: f32[1, 2, 3, 3] = aten.convolution.default(%h, %pw, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  return (%c2,)
}

# -----
# A max pooling between two convolutions (a ResNet stem) passes the layout on: the first
# convolution may return its result channels-last, since only the pooling's values are read
# and only by the second convolution.
# CHECK-LABEL: graph @stem_pool
# CHECK: %c1_act: f32[1, 2, 4, 4] = fastc.conv2d_act.default(%x, %w, none, [1, 1], [0, 0], [1, 1], 1, none, "relu", [], true)
# CHECK: aten.max_pool2d_with_indices.default(%c1_act, [2, 2], [2, 2])
# CHECK: %c2_act: f32[1, 2, 2, 2] = fastc.conv2d_act.default(%p, %w, none, [1, 1], [0, 0], [1, 1], 1, none, "none", [], false)
graph @stem_pool(%x: f32[1, 2, 4, 4]) {
  %w: f32[2, 2, 1, 1] = const dense<[1.0, 0.5, -0.5, 2.0]>
  %c1: f32[1, 2, 4, 4] = aten.convolution.default(%x, %w, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %r: f32[1, 2, 4, 4] = aten.relu.default(%c1)
  %mp: (f32[1, 2, 2, 2], i64[1, 2, 2, 2]) = aten.max_pool2d_with_indices.default(%r, [2, 2], [2, 2])
  %p: f32[1, 2, 2, 2] = getitem(%mp, 0)
  %c2: f32[1, 2, 2, 2] = aten.convolution.default(%p, %w, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  return (%c2,)
}

# -----
# A linear layer on 3-D input as aot graphs have it (view -> addmm -> view) with a tanh GELU:
# the activation moves into the op, which then takes the 3-D input as it is (both views go);
# the (out, in) weight is the constant itself.
# CHECK-LABEL: graph @linear_gelu
# CHECK-NOT: aten.
# CHECK: %addmm_act: f32[2, 2, 2] = fastc.linear_act.default(%x, %w, %b, none, "gelu-tanh", [])
# CHECK-NEXT: return (%addmm_act,)
graph @linear_gelu(%x: f32[2, 2, 3]) {
  %w: f32[2, 3] = const dense<[1.0, 0.5, -0.5, 2.0, 0.0, 1.0]>
  %b: f32[2] = const dense<[0.25, -0.25]>
  %v: f32[4, 3] = aten.view.default(%x, [4, 3])
  %t: f32[3, 2] = aten.permute.default(%w, [1, 0])
  %addmm: f32[4, 2] = aten.addmm.default(%b, %v, %t)
  %u: f32[2, 2, 2] = aten.view.default(%addmm, [2, 2, 2])
  %g: f32[2, 2, 2] = aten.gelu.default(%u, approximate="tanh")
  return (%g,)
}

# -----
# SiLU as decompositions spell it, x * sigmoid(x), is taken too.
# CHECK-LABEL: graph @silu_spelled_out
# CHECK: %mm_act: f32[4, 2] = fastc.linear_act.default(%x, %w, none, none, "silu", [])
# CHECK-NEXT: return (%mm_act,)
graph @silu_spelled_out(%x: f32[4, 3]) {
  %w: f32[2, 3] = const dense<[1.0, 0.5, -0.5, 2.0, 0.0, 1.0]>
  %t: f32[3, 2] = aten.permute.default(%w, [1, 0])
  %mm: f32[4, 2] = aten.mm.default(%x, %t)
  %s: f32[4, 2] = aten.sigmoid.default(%mm)
  %m: f32[4, 2] = aten.mul.Tensor(%mm, %s)
  return (%m,)
}

# -----
# A product whose result has two readers keeps its activation apart; the product with no
# activation after it still becomes the op (its weight is packed once).
# CHECK-LABEL: graph @two_readers
# CHECK: %mm_act: f32[4, 2] = fastc.linear_act.default(%x, %w, none, none, "none", [])
# CHECK-NEXT: %s: f32[4, 2] = aten.relu.default(%mm_act)
# CHECK-NEXT: %m: f32[4, 2] = aten.add.Tensor(%mm_act, %s)
graph @two_readers(%x: f32[4, 3]) {
  %w: f32[2, 3] = const dense<[1.0, 0.5, -0.5, 2.0, 0.0, 1.0]>
  %t: f32[3, 2] = aten.permute.default(%w, [1, 0])
  %mm: f32[4, 2] = aten.mm.default(%x, %t)
  %s: f32[4, 2] = aten.relu.default(%mm)
  %m: f32[4, 2] = aten.add.Tensor(%mm, %s)
  return (%m,)
}

# -----
# Not taken: a weight that is a graph input (not frozen), and float64 (oneDNN's ops take float32).
# CHECK-LABEL: graph @not_taken
# CHECK-NOT: fastc.
# CHECK: aten.convolution.default(%x, %w,
# CHECK: aten.mm.default(%y, %t)
graph @not_taken(%x: f32[1, 2, 3, 3], %w: f32[2, 2, 1, 1], %y: f64[4, 3]) {
  %w2: f64[2, 3] = const dense<[1.0, 0.5, -0.5, 2.0, 0.0, 1.0]>
  %c: f32[1, 2, 3, 3] = aten.convolution.default(%x, %w, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %r: f32[1, 2, 3, 3] = aten.relu.default(%c)
  %t: f64[3, 2] = aten.permute.default(%w2, [1, 0])
  %mm: f64[4, 2] = aten.mm.default(%y, %t)
  return (%r, %mm)
}
