# RUN: %fastc-opt --split-input-file -p split-squeeze-dims %s | filecheck %s

# One squeeze.dim per dim, the last dim first: the earlier dims keep their positions.
# CHECK-LABEL: graph @squeeze_dims
# CHECK-NOT: aten.squeeze.dims
# CHECK: %[[A:.*]]: f32[2, 1, 3] = aten.squeeze.dim(%x, 3)
# CHECK-NEXT: %[[B:.*]]: f32[2, 3] = aten.squeeze.dim(%[[A]], 1)
# CHECK-NEXT: return (%[[B]],)
graph @squeeze_dims(%x: f32[2, 1, 3, 1]) {
  %q: f32[2, 3] = aten.squeeze.dims(%x, [1, -1])
  return (%q,)
}

# -----
# A dim named twice (as d and d - rank) is squeezed once; a dim whose size is not 1 is kept,
# as squeeze.dims keeps it.
# CHECK-LABEL: graph @repeated_and_kept
# CHECK: %[[A:.*]]: f32[4, 1] = aten.squeeze.dim(%x, 2)
# CHECK-NEXT: %[[B:.*]]: f32[4, 1] = aten.squeeze.dim(%[[A]], 0)
# CHECK-NEXT: return (%[[B]],)
graph @repeated_and_kept(%x: f32[4, 1, 1]) {
  %q: f32[4, 1] = aten.squeeze.dims(%x, [2, -1, 0])
  return (%q,)
}

# -----
# Logsumexp's shape: the reduced dim squeezed after the max is subtracted.
# CHECK-LABEL: graph @logsumexp_tail
# CHECK: %[[A:.*]]: f32[5] = aten.squeeze.dim(%m, 1)
# CHECK-NEXT: %r: f32[5] = aten.add.Tensor(%l, %[[A]])
graph @logsumexp_tail(%m: f32[5, 1], %l: f32[5]) {
  %s: f32[5] = aten.squeeze.dims(%m, [1])
  %r: f32[5] = aten.add.Tensor(%l, %s)
  return (%r,)
}
