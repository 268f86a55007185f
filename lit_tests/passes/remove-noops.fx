# RUN: %fastc-opt --split-input-file -p remove-noops %s | filecheck %s

# Views to the same shape, identity permutes and full slices go.
# CHECK-LABEL: graph @noop_views
# CHECK-NOT: aten.view
# CHECK-NOT: aten.permute
# CHECK-NOT: aten.slice
# CHECK: %r: f32[2, 3] = aten.relu.default(%x)
graph @noop_views(%x: f32[2, 3]) {
  %v: f32[2, 3] = aten.view.default(%x, [2, 3])
  %p: f32[2, 3] = aten.permute.default(%v, [0, 1])
  %s: f32[2, 3] = aten.slice.Tensor(%p, 1, 0, 9223372036854775807)
  %r: f32[2, 3] = aten.relu.default(%s)
  return (%r,)
}

# -----
# Real views stay.
# CHECK-LABEL: graph @real_views
# CHECK: aten.view.default(%x, [3, 2])
# CHECK: aten.permute.default(%v, [1, 0])
graph @real_views(%x: f32[2, 3]) {
  %v: f32[3, 2] = aten.view.default(%x, [3, 2])
  %p: f32[2, 3] = aten.permute.default(%v, [1, 0])
  return (%p,)
}

# -----
# A copy of a fresh intermediate goes; a copy of a graph input stays (the output must not alias it).
# CHECK-LABEL: graph @copies
# CHECK: %c1: f32[4] = aten.clone.default(%x)
# CHECK-NOT: %c2
# CHECK: return (%c1, %e)
graph @copies(%x: f32[4]) {
  %c1: f32[4] = aten.clone.default(%x)
  %e: f32[4] = aten.exp.default(%x)
  %c2: f32[4] = aten.clone.default(%e)
  return (%c1, %c2)
}

# -----
# A copy that changes the dtype is not a no-op.
# CHECK-LABEL: graph @casts
# CHECK: aten._to_copy.default(%e, dtype=torch.float16)
graph @casts(%x: f32[4]) {
  %e: f32[4] = aten.exp.default(%x)
  %h: f16[4] = aten._to_copy.default(%e, dtype=torch.float16)
  return (%h,)
}

# -----
# Padding by nothing copies a fresh value: it goes; padding by something stays.
# CHECK-LABEL: graph @pads
# CHECK-NOT: %p0
# CHECK: %p1: f32[2, 6] = aten.constant_pad_nd.default(%e, [1, 1], 0.0)
# CHECK: %r: f32[2, 4] = aten.relu.default(%e)
graph @pads(%x: f32[2, 4]) {
  %e: f32[2, 4] = aten.exp.default(%x)
  %p0: f32[2, 4] = aten.constant_pad_nd.default(%e, [0, 0], 0.0)
  %p1: f32[2, 6] = aten.constant_pad_nd.default(%p0, [1, 1], 0.0)
  %r: f32[2, 4] = aten.relu.default(%p0)
  return (%p1, %r)
}
