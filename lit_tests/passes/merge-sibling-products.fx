# RUN: %fastc-opt --split-input-file -p merge-sibling-products %s | filecheck %s

# Three projections of one input (q, k, v): one product with the weights and biases side by
# side; each former result is a column slice, read by the same views as before.
# CHECK-LABEL: graph @qkv
# CHECK: %q_merged: f32[4, 6] = aten.addmm.default(%q_merged_bias, %x, %q_merged_weight)
# CHECK-DAG: %q_cols: f32[4, 2] = aten.slice.Tensor(%q_merged, 1, 0, 2)
# CHECK-DAG: %k_cols: f32[4, 2] = aten.slice.Tensor(%q_merged, 1, 2, 4)
# CHECK-DAG: %v_cols: f32[4, 2] = aten.slice.Tensor(%q_merged, 1, 4, 6)
# CHECK-NOT: %q: f32
# CHECK: aten.view.default
# CHECK: return
graph @qkv(%x: f32[4, 3]) {
  %wq: f32[3, 2] = const dense<[1.0, 0.5, -0.5, 2.0, 0.0, 1.0]>
  %wk: f32[3, 2] = const dense<[0.5, 0.5, 1.5, -2.0, 1.0, 0.0]>
  %wv: f32[3, 2] = const dense<[-1.0, 0.25, 0.5, 0.0, 2.0, 1.0]>
  %bq: f32[2] = const dense<[0.25, -0.25]>
  %bk: f32[2] = const dense<[1.0, 0.0]>
  %bv: f32[2] = const dense<[0.0, 0.5]>
  %q: f32[4, 2] = aten.addmm.default(%bq, %x, %wq)
  %k: f32[4, 2] = aten.addmm.default(%bk, %x, %wk)
  %v: f32[4, 2] = aten.addmm.default(%bv, %x, %wv)
  %qv: f32[2, 2, 2] = aten.view.default(%q, [2, 2, 2])
  %qk: f32[2, 2, 2] = aten.mul.Tensor(%qv, %qv)
  %s: f32[4, 2] = aten.add.Tensor(%k, %v)
  %r: f32[2, 2, 2] = aten.view.default(%s, [2, 2, 2])
  %o: f32[2, 2, 2] = aten.add.Tensor(%qk, %r)
  return (%o,)
}

# -----
# Products without biases merge as one mm; a product the graph returns stays as it is.
# CHECK-LABEL: graph @mm_and_returned
# CHECK: %a_merged: f32[4, 4] = aten.mm.default(%x, %a_merged_weight)
# CHECK: %c: f32[4, 2] = aten.addmm.default(%bc, %x, %wc)
# CHECK: return (%sum{{.*}}, %c)
graph @mm_and_returned(%x: f32[4, 3]) {
  %wa: f32[3, 2] = const dense<[1.0, 0.5, -0.5, 2.0, 0.0, 1.0]>
  %wb: f32[3, 2] = const dense<[0.5, 0.5, 1.5, -2.0, 1.0, 0.0]>
  %wc: f32[3, 2] = const dense<[-1.0, 0.25, 0.5, 0.0, 2.0, 1.0]>
  %bc: f32[2] = const dense<[0.0, 0.5]>
  %a: f32[4, 2] = aten.mm.default(%x, %wa)
  %b: f32[4, 2] = aten.mm.default(%x, %wb)
  %c: f32[4, 2] = aten.addmm.default(%bc, %x, %wc)
  %sum: f32[4, 2] = aten.add.Tensor(%a, %b)
  return (%sum, %c)
}

# -----
# A reader that flattens a result needs it contiguous: the group stays apart.
# CHECK-LABEL: graph @flattened
# CHECK-NOT: merged
graph @flattened(%x: f32[4, 3]) {
  %wa: f32[3, 2] = const dense<[1.0, 0.5, -0.5, 2.0, 0.0, 1.0]>
  %wb: f32[3, 2] = const dense<[0.5, 0.5, 1.5, -2.0, 1.0, 0.0]>
  %a: f32[4, 2] = aten.mm.default(%x, %wa)
  %b: f32[4, 2] = aten.mm.default(%x, %wb)
  %f: f32[8] = aten.view.default(%a, [8])
  %g: f32[8] = aten.view.default(%b, [8])
  %s: f32[8] = aten.add.Tensor(%f, %g)
  return (%s,)
}
