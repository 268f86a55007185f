# RUN: %fastc-opt --split-input-file -p cse,dead-code %s | filecheck %s

# The second identical add is merged into the first.
# CHECK-LABEL: graph @same_op_twice
# CHECK: %a: f32[4] = aten.add.Tensor(%x, %y)
# CHECK-NOT: aten.add.Tensor
# CHECK: %m: f32[4] = aten.mul.Tensor(%a, %a)
graph @same_op_twice(%x: f32[4], %y: f32[4]) {
  %a: f32[4] = aten.add.Tensor(%x, %y)
  %b: f32[4] = aten.add.Tensor(%x, %y)
  %m: f32[4] = aten.mul.Tensor(%a, %b)
  return (%m,)
}

# -----
# Same op, different scalar type (1 vs 1.0 vs true): not merged.
# CHECK-LABEL: graph @scalar_types_differ
# CHECK: aten.add.Scalar(%x, 1)
# CHECK: aten.add.Scalar(%x, 1.0)
graph @scalar_types_differ(%x: f32[4]) {
  %a: f32[4] = aten.add.Scalar(%x, 1)
  %b: f32[4] = aten.add.Scalar(%x, 1.0)
  %m: f32[4] = aten.mul.Tensor(%a, %b)
  return (%m,)
}

# -----
# Random ops are never merged.
# CHECK-LABEL: graph @random_not_merged
# CHECK-COUNT-2: aten.rand_like.default
graph @random_not_merged(%x: f32[4]) {
  %a: f32[4] = aten.rand_like.default(%x)
  %b: f32[4] = aten.rand_like.default(%x)
  %m: f32[4] = aten.sub.Tensor(%a, %b)
  return (%m,)
}
