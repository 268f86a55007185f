# RUN: %fastc-opt --split-input-file -p index-as-view %s | filecheck %s

# HF's attention-mask indexing, mask[arange(b)[:, None, None, None], arange(s)[None, None, None, :]]:
# the mask with two size-1 dims inserted, as one view.
# CHECK-LABEL: graph @mask
# CHECK: %i_view: b8[2, 1, 1, 3] = aten.view.default(%m, [2, 1, 1, 3])
# CHECK-NOT: aten.index
graph @mask(%m: b8[2, 3]) {
  %rows: i64[2, 1, 1, 1] = const dense<[0, 1]>
  %cols: i64[1, 1, 1, 3] = const dense<[0, 1, 2]>
  %i: b8[2, 1, 1, 3] = aten.index.Tensor(%m, [%rows, %cols])
  %n: b8[2, 1, 1, 3] = aten.logical_not.default(%i)
  return (%n,)
}

# -----
# Indices that are not aranges (a permutation) gather: the index stays.
# CHECK-LABEL: graph @permuted
# CHECK: aten.index.Tensor
graph @permuted(%m: f32[2, 3]) {
  %rows: i64[2, 1] = const dense<[1, 0]>
  %cols: i64[1, 3] = const dense<[0, 1, 2]>
  %i: f32[2, 3] = aten.index.Tensor(%m, [%rows, %cols])
  %n: f32[2, 3] = aten.neg.default(%i)
  return (%n,)
}

# -----
# The result is returned: a copy the caller may keep, so it stays a copy.
# CHECK-LABEL: graph @returned
# CHECK: aten.index.Tensor
graph @returned(%m: f32[2, 3]) {
  %rows: i64[2, 1] = const dense<[0, 1]>
  %i: f32[2, 1, 3] = aten.index.Tensor(%m, [%rows])
  return (%i,)
}
