# RUN: %fastc-opt --split-input-file -p round-weights %s | filecheck %s
# RUN: %fastc-opt --split-input-file -p 'round-weights{dtype=bfloat16}' %s | filecheck %s --check-prefix=BF16

# Every f32 constant (weight or not) is rounded to the nearest float16 value and stays f32;
# constants float16 holds exactly (1.5, -0.25) are left alone.
# CHECK-LABEL: graph @linear
# CHECK: %w_rounded: f32[2, 2] = const dense<[1.0, 0.0999755859375, 3.0, 4.0]>
# CHECK: %b: f32[2] = const dense<[1.5, -0.25]>
# CHECK: %c_rounded: f32[2] = const dense<[0.333251953125, 65504.0]>
# BF16-LABEL: graph @linear
# BF16: %w_rounded: f32[2, 2] = const dense<[1.0, 0.10009765625, 3.0, 4.0]>
# BF16: %b: f32[2] = const dense<[1.5, -0.25]>
graph @linear(%x: f32[4, 2]) {
  %w: f32[2, 2] = const dense<[1.0, 0.1, 3.0, 4.0]>
  %b: f32[2] = const dense<[1.5, -0.25]>
  %c: f32[2] = const dense<[0.3333333432674408, 65504.0]>
  %t: f32[2, 2] = aten.permute.default(%w, [1, 0])
  %y: f32[4, 2] = aten.addmm.default(%b, %x, %t)
  %z: f32[4, 2] = aten.mul.Tensor(%y, %c)
  return (%z,)
}

# -----
# Constants no wider than float16, and integer ones, are left alone.
# CHECK-LABEL: graph @narrow
# CHECK-NOT: _rounded
graph @narrow(%x: f16[2]) {
  %h: f16[2] = const dense<[0.0999755859375, 2.0]>
  %i: i64[2] = const dense<[3, 4]>
  %y: f16[2] = aten.mul.Tensor(%x, %h)
  %z: f16[2] = aten.add.Tensor(%y, %i)
  return (%z,)
}
