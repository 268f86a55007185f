# RUN: %fastc-opt -p 'prune-heads{fraction=0.5}' %s | filecheck %s
# RUN: %fastc-opt -p 'prune-heads{fraction=0.5}' %s | %fastc-opt | filecheck %s
# RUN: not %fastc-opt -p 'prune-heads{fraction=1}' %s 2>&1 | filecheck %s --check-prefix=FRACTION
# RUN: not %fastc-opt -p 'prune-heads{score=wanda}' %s 2>&1 | filecheck %s --check-prefix=SCORE

# FRACTION: fastc-opt: error: pass 'prune-heads': option fraction=1.0 is not valid (expected a number in (0, 1))
# SCORE: fastc-opt: error: pass 'prune-heads': option score='wanda' is not valid (expected one of output-norm, magnitude)

# fastc-opt has no calibration inputs: the scores are the heads' weight norms (magnitude).
# The second RUN line parses the output again: the new types are consistent.

# Two heads of two channels, separate q/k/v, softmax(q k^T) v by bmm, an output projection.
# Head 1's q/k/v rows are small: it goes. q, k and v keep rows 0 and 1, the output projection
# columns 0 and 1, and every view, expand and bmm between them has one head.
# CHECK-LABEL: graph @separate
# CHECK: %wq_pruned: f32[2, 4] = const dense<[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0]>
# CHECK: %mm: f32[3, 2] = aten.mm.default(%view, %permute)
# CHECK: %view_2: f32[1, 3, 1, 2] = aten.view.default(%view_1, [1, 3, 1, 2])
# CHECK: %wk_pruned: f32[2, 4] = const
# CHECK: %wv_pruned: f32[2, 4] = const
# CHECK: %expand: f32[1, 1, 3, 2] = aten.expand.default(%permute_1, [1, 1, 3, 2])
# CHECK: %view_9: f32[1, 3, 2] = aten.view.default(%expand, [1, 3, 2])
# CHECK: %bmm: f32[1, 3, 3] = aten.bmm.default(%view_9, %view_10)
# CHECK: %_softmax: f32[1, 1, 3, 3] = aten._softmax.default(%view_11, -1, false)
# CHECK: %bmm_1: f32[1, 3, 2] = aten.bmm.default(%view_12, %view_13)
# CHECK: %view_15: f32[1, 3, 2] = aten.view.default(%clone, [1, 3, 2])
# CHECK: %wo_pruned: f32[4, 2] = const dense<[1.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]>
# CHECK: %mm_3: f32[3, 4] = aten.mm.default(%view_16, %permute_8)
graph @separate(%x: f32[1, 3, 4]) {
  %wq: f32[4, 4] = const dense<[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.1]>
  %permute: f32[4, 4] = aten.permute.default(%wq, [1, 0])
  %view: f32[3, 4] = aten.view.default(%x, [3, 4])
  %mm: f32[3, 4] = aten.mm.default(%view, %permute)
  %view_1: f32[1, 3, 4] = aten.view.default(%mm, [1, 3, 4])
  %view_2: f32[1, 3, 2, 2] = aten.view.default(%view_1, [1, 3, 2, 2])
  %permute_1: f32[1, 2, 3, 2] = aten.permute.default(%view_2, [0, 2, 1, 3])
  %wk: f32[4, 4] = const dense<[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.1]>
  %permute_2: f32[4, 4] = aten.permute.default(%wk, [1, 0])
  %view_3: f32[3, 4] = aten.view.default(%x, [3, 4])
  %mm_1: f32[3, 4] = aten.mm.default(%view_3, %permute_2)
  %view_4: f32[1, 3, 4] = aten.view.default(%mm_1, [1, 3, 4])
  %view_5: f32[1, 3, 2, 2] = aten.view.default(%view_4, [1, 3, 2, 2])
  %permute_3: f32[1, 2, 3, 2] = aten.permute.default(%view_5, [0, 2, 1, 3])
  %wv: f32[4, 4] = const dense<[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.1, 0.0, 0.0, 0.0, 0.0, 0.1]>
  %permute_4: f32[4, 4] = aten.permute.default(%wv, [1, 0])
  %view_6: f32[3, 4] = aten.view.default(%x, [3, 4])
  %mm_2: f32[3, 4] = aten.mm.default(%view_6, %permute_4)
  %view_7: f32[1, 3, 4] = aten.view.default(%mm_2, [1, 3, 4])
  %view_8: f32[1, 3, 2, 2] = aten.view.default(%view_7, [1, 3, 2, 2])
  %permute_5: f32[1, 2, 3, 2] = aten.permute.default(%view_8, [0, 2, 1, 3])
  %permute_6: f32[1, 2, 2, 3] = aten.permute.default(%permute_3, [0, 1, 3, 2])
  %expand: f32[1, 2, 3, 2] = aten.expand.default(%permute_1, [1, 2, 3, 2])
  %view_9: f32[2, 3, 2] = aten.view.default(%expand, [2, 3, 2])
  %expand_1: f32[1, 2, 2, 3] = aten.expand.default(%permute_6, [1, 2, 2, 3])
  %view_10: f32[2, 2, 3] = aten.view.default(%expand_1, [2, 2, 3])
  %bmm: f32[2, 3, 3] = aten.bmm.default(%view_9, %view_10)
  %view_11: f32[1, 2, 3, 3] = aten.view.default(%bmm, [1, 2, 3, 3])
  %_softmax: f32[1, 2, 3, 3] = aten._softmax.default(%view_11, -1, false)
  %expand_2: f32[1, 2, 3, 3] = aten.expand.default(%_softmax, [1, 2, 3, 3])
  %view_12: f32[2, 3, 3] = aten.view.default(%expand_2, [2, 3, 3])
  %expand_3: f32[1, 2, 3, 2] = aten.expand.default(%permute_5, [1, 2, 3, 2])
  %view_13: f32[2, 3, 2] = aten.view.default(%expand_3, [2, 3, 2])
  %bmm_1: f32[2, 3, 2] = aten.bmm.default(%view_12, %view_13)
  %view_14: f32[1, 2, 3, 2] = aten.view.default(%bmm_1, [1, 2, 3, 2])
  %permute_7: f32[1, 3, 2, 2] = aten.permute.default(%view_14, [0, 2, 1, 3])
  %clone: f32[1, 3, 2, 2] = aten.clone.default(%permute_7, memory_format=torch.contiguous_format)
  %view_15: f32[1, 3, 4] = aten.view.default(%clone, [1, 3, 4])
  %wo: f32[4, 4] = const dense<[1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0]>
  %permute_8: f32[4, 4] = aten.permute.default(%wo, [1, 0])
  %view_16: f32[3, 4] = aten.view.default(%view_15, [3, 4])
  %mm_3: f32[3, 4] = aten.mm.default(%view_16, %permute_8)
  %view_17: f32[1, 3, 4] = aten.view.default(%mm_3, [1, 3, 4])
  return (%view_17,)
}

