# RUN: %fastc-opt --split-input-file -p zero-weights %s | filecheck %s

# Both weights of a two-layer MLP become zeros; biases and the LayerNorm's parameters stay.
# CHECK-LABEL: graph @mlp
# CHECK: %w1_zeroed: f32[2, 2] = const dense<[0.0, 0.0, 0.0, 0.0]>
# CHECK: %b1: f32[2] = const dense<[0.5, -0.5]>
# CHECK: %w2_zeroed: f32[2, 2] = const dense<[0.0, 0.0, 0.0, 0.0]>
# CHECK: %gamma: f32[2] = const dense<[2.0, 3.0]>
# CHECK: aten.addmm.default(%b1, %x, %t1)
# CHECK: aten.mm.default(%h, %t2)
graph @mlp(%x: f32[4, 2]) {
  %w1: f32[2, 2] = const dense<[1.0, 2.0, 3.0, 4.0]>
  %b1: f32[2] = const dense<[0.5, -0.5]>
  %w2: f32[2, 2] = const dense<[5.0, 6.0, 7.0, 8.0]>
  %gamma: f32[2] = const dense<[2.0, 3.0]>
  %t1: f32[2, 2] = aten.permute.default(%w1, [1, 0])
  %a: f32[4, 2] = aten.addmm.default(%b1, %x, %t1)
  %h: f32[4, 2] = aten.relu.default(%a)
  %t2: f32[2, 2] = aten.permute.default(%w2, [1, 0])
  %y: f32[4, 2] = aten.mm.default(%h, %t2)
  %z: f32[4, 2] = aten.mul.Tensor(%y, %gamma)
  return (%z,)
}

# -----
# A matrix product of two inputs has no weight: nothing changes.
# CHECK-LABEL: graph @no_weights
# CHECK-NOT: _zeroed
# CHECK: aten.bmm.default(%q, %k)
graph @no_weights(%q: f32[1, 2, 3], %k: f32[1, 3, 2]) {
  %s: f32[1, 2, 2] = aten.bmm.default(%q, %k)
  return (%s,)
}
