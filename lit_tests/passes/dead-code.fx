# RUN: %fastc-opt --split-input-file -p dead-code %s | filecheck %s

# An unused op and an unused constant go; the used chain stays.
# CHECK-LABEL: graph @unused_ops
# CHECK-NOT: aten.exp
# CHECK-NOT: const
# CHECK: %r: f32[4] = aten.relu.default(%x)
# CHECK-NEXT: return (%r,)
graph @unused_ops(%x: f32[4]) {
  %w: f32[4] = const dense<[1.0, 2.0, 3.0, 4.0]>
  %e: f32[4] = aten.exp.default(%x)
  %m: f32[4] = aten.mul.Tensor(%e, %w)
  %r: f32[4] = aten.relu.default(%x)
  return (%r,)
}

# -----
# Random ops are kept even when unused: removing one would shift the random stream.
# CHECK-LABEL: graph @keeps_random
# CHECK: aten.rand_like.default
# CHECK: aten.neg.default
graph @keeps_random(%x: f32[4]) {
  %u: f32[4] = aten.rand_like.default(%x)
  %n: f32[4] = aten.neg.default(%x)
  return (%n,)
}

# -----
# Mutating ops are kept.
# CHECK-LABEL: graph @keeps_mutation
# CHECK: aten.copy_.default
graph @keeps_mutation(%x: f32[4], %y: f32[4]) {
  %c: f32[4] = aten.copy_.default(%x, %y)
  return (%y,)
}
