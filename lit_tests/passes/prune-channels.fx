# RUN: %fastc-opt --split-input-file -p 'prune-channels{sparsity=0.5}' %s | filecheck %s
# RUN: %fastc-opt --split-input-file -p 'prune-channels{sparsity=0.5}' %s | %fastc-opt --split-input-file | filecheck %s
# RUN: not %fastc-opt -p 'prune-channels{sparsity=1.5}' %s 2>&1 | filecheck %s --check-prefix=SPARSITY
# RUN: not %fastc-opt -p 'prune-channels{score=l1}' %s 2>&1 | filecheck %s --check-prefix=SCORE

# SPARSITY: fastc-opt: error: pass 'prune-channels': option sparsity=1.5 is not valid (expected a number in (0, 1))
# SCORE: fastc-opt: error: pass 'prune-channels': option score='l1' is not valid (expected one of wanda, magnitude)

# fastc-opt has no calibration inputs: the scores are the channels' weight norms (magnitude).
# The second RUN line parses the output again: the new types are consistent.

# A Linear 2 -> 4, relu, a product 4 -> 2: hidden channels 0 and 2 have the largest norms and
# stay; the first weight loses rows 1 and 3, its bias their entries, the second weight columns
# 1 and 3, and every type between them has 2 channels.
# CHECK-LABEL: graph @mlp
# CHECK: %w1_pruned: f32[2, 2] = const dense<[1.0, 1.0, 2.0, 2.0]>
# CHECK: %b1_pruned: f32[2] = const dense<[0.5, 0.125]>
# CHECK: %t1: f32[2, 2] = aten.permute.default(%w1_pruned, [1, 0])
# CHECK: %h: f32[3, 2] = aten.addmm.default(%b1_pruned, %x, %t1)
# CHECK: %r: f32[3, 2] = aten.relu.default(%h)
# CHECK: %w2_pruned: f32[2, 2] = const dense<[1.0, 1.0, 0.0, 0.0]>
# CHECK: %y: f32[3, 2] = aten.mm.default(%r, %t2)
graph @mlp(%x: f32[3, 2]) {
  %w1: f32[4, 2] = const dense<[1.0, 1.0, 0.1, 0.1, 2.0, 2.0, 0.2, 0.0]>
  %b1: f32[4] = const dense<[0.5, 0.25, 0.125, 1.0]>
  %t1: f32[2, 4] = aten.permute.default(%w1, [1, 0])
  %h: f32[3, 4] = aten.addmm.default(%b1, %x, %t1)
  %r: f32[3, 4] = aten.relu.default(%h)
  %w2: f32[2, 4] = const dense<[1.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0]>
  %t2: f32[4, 2] = aten.permute.default(%w2, [1, 0])
  %y: f32[3, 2] = aten.mm.default(%r, %t2)
  return (%y,)
}

# -----
# A 1x1 convolution's output channels 0 and 2 stay: its weight rows, the batch norm's statistics
# and the next convolution's input channels shrink together, through the relu.
# CHECK-LABEL: graph @conv_bn
# CHECK: %w1_pruned: f32[2, 1, 1, 1] = const dense<[1.0, 2.0]>
# CHECK: %mean_pruned: f32[2] = const dense<[0.0, 2.0]>
# CHECK: %var_pruned: f32[2] = const dense<[1.0, 4.0]>
# CHECK: %c1: f32[1, 2, 3, 3] = aten.convolution.default(%x, %w1_pruned, none,
# CHECK: %bn: (f32[1, 2, 3, 3], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%c1, none, none, %mean_pruned, %var_pruned, 0.1, 1e-05)
# CHECK: %r: f32[1, 2, 3, 3] = aten.relu.default(%y)
# CHECK: %w2_pruned: f32[2, 2, 1, 1] = const
# CHECK: %c2: f32[1, 2, 3, 3] = aten.convolution.default(%r, %w2_pruned, none,
graph @conv_bn(%x: f32[1, 1, 3, 3]) {
  %w1: f32[4, 1, 1, 1] = const dense<[1.0, 0.1, 2.0, 0.2]>
  %mean: f32[4] = const dense<[0.0, 1.0, 2.0, 3.0]>
  %var: f32[4] = const dense<[1.0, 1.0, 4.0, 4.0]>
  %c1: f32[1, 4, 3, 3] = aten.convolution.default(%x, %w1, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %bn: (f32[1, 4, 3, 3], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%c1, none, none, %mean, %var, 0.1, 1e-05)
  %y: f32[1, 4, 3, 3] = getitem(%bn, 0)
  %r: f32[1, 4, 3, 3] = aten.relu.default(%y)
  %w2: f32[2, 4, 1, 1] = const dense<[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]>
  %c2: f32[1, 2, 3, 3] = aten.convolution.default(%r, %w2, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  return (%c2,)
}

# -----
# A residual add reads the channels next to the graph input: nothing can be removed.
# CHECK-LABEL: graph @residual
# CHECK-NOT: pruned
# CHECK: return
graph @residual(%x: f32[3, 2]) {
  %w1: f32[2, 2] = const dense<[1.0, 0.0, 0.0, 1.0]>
  %t1: f32[2, 2] = aten.permute.default(%w1, [1, 0])
  %h: f32[3, 2] = aten.mm.default(%x, %t1)
  %s: f32[3, 2] = aten.add.Tensor(%x, %h)
  %w2: f32[2, 2] = const dense<[1.0, 0.0, 0.0, 1.0]>
  %t2: f32[2, 2] = aten.permute.default(%w2, [1, 0])
  %y: f32[3, 2] = aten.mm.default(%s, %t2)
  return (%y,)
}
