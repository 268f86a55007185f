# RUN: %fastc-opt --split-input-file -p spell-out-tanh-gelu %s | filecheck %s

# The tanh GELU becomes x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 * x^3))), in x's dtype.
# CHECK-LABEL: graph @tanh_gelu
# CHECK-NOT: aten.gelu
# CHECK: %[[X2:.*]]: f16[2, 3] = aten.mul.Tensor(%x, %x)
# CHECK-NEXT: %[[X3:.*]]: f16[2, 3] = aten.mul.Tensor(%[[X2]], %x)
# CHECK-NEXT: %[[C:.*]]: f16[2, 3] = aten.mul.Tensor(%[[X3]], 0.044715)
# CHECK-NEXT: %[[IN:.*]]: f16[2, 3] = aten.add.Tensor(%x, %[[C]])
# CHECK-NEXT: %[[S:.*]]: f16[2, 3] = aten.mul.Tensor(%[[IN]], 0.7978845608028654)
# CHECK-NEXT: %[[T:.*]]: f16[2, 3] = aten.tanh.default(%[[S]])
# CHECK-NEXT: %[[T1:.*]]: f16[2, 3] = aten.add.Tensor(%[[T]], 1.0)
# CHECK-NEXT: %[[H:.*]]: f16[2, 3] = aten.mul.Tensor(%x, 0.5)
# CHECK-NEXT: %[[G:.*]]: f16[2, 3] = aten.mul.Tensor(%[[T1]], %[[H]])
# CHECK-NEXT: %r: f16[2, 3] = aten.add.Tensor(%[[G]], %x)
graph @tanh_gelu(%x: f16[2, 3]) {
  %g: f16[2, 3] = aten.gelu.default(%x, approximate="tanh")
  %r: f16[2, 3] = aten.add.Tensor(%g, %x)
  return (%r,)
}

# -----
# The exact GELU (erf) stays: torch-mlir lowers it as eager computes it.
# CHECK-LABEL: graph @exact_gelu
# CHECK: %g: f32[4] = aten.gelu.default(%x)
# CHECK-NEXT: %n: f32[4] = aten.gelu.default(%x, approximate="none")
graph @exact_gelu(%x: f32[4]) {
  %g: f32[4] = aten.gelu.default(%x)
  %n: f32[4] = aten.gelu.default(%x, approximate="none")
  return (%g, %n)
}
