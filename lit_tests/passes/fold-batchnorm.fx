# RUN: %fastc-opt --split-input-file -p fold-batchnorm,dead-code %s | filecheck %s

# Eval-mode BatchNorm after a convolution: scale = gamma / sqrt(var + eps) = [2, 0.5] (eps=0),
# W' = W * scale, b' = (b - mean) * scale + beta = [(1-1)*2+1, (2-0)*0.5+0] = [1, 1].
# CHECK-LABEL: graph @conv_bn
# CHECK-NOT: batch_norm
# CHECK: %convolution_weight_bn: f32[2, 1, 1, 1] = const dense<[6.0, 2.0]>
# CHECK: %convolution_bias_bn: f32[2] = const dense<[1.0, 1.0]>
# CHECK: %convolution: f32[1, 2, 3, 3] = aten.convolution.default(%x, %convolution_weight_bn, %convolution_bias_bn,
# CHECK: return (%convolution,)
graph @conv_bn(%x: f32[1, 1, 3, 3]) {
  %w: f32[2, 1, 1, 1] = const dense<[3.0, 4.0]>
  %b: f32[2] = const dense<[1.0, 2.0]>
  %gamma: f32[2] = const dense<[2.0, 1.0]>
  %beta: f32[2] = const dense<[1.0, 0.0]>
  %mean: f32[2] = const dense<[1.0, 0.0]>
  %var: f32[2] = const dense<[1.0, 4.0]>
  %convolution: f32[1, 2, 3, 3] = aten.convolution.default(%x, %w, %b, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %bn: (f32[1, 2, 3, 3], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%convolution, %gamma, %beta, %mean, %var, 0.1, 0.0)
  %y: f32[1, 2, 3, 3] = getitem(%bn, 0)
  return (%y,)
}

# -----
# BatchNorm1d after a linear layer (addmm with a transposed constant weight).
# CHECK-LABEL: graph @linear_bn
# CHECK-NOT: batch_norm
# CHECK: %addmm: f32[4, 2] = aten.addmm.default(%addmm_bias_bn, %x, %addmm_weight_bn)
graph @linear_bn(%x: f32[4, 3]) {
  %w: f32[2, 3] = const dense<[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]>
  %b: f32[2] = const dense<[0.5, -0.5]>
  %mean: f32[2] = const dense<[0.1, 0.2]>
  %var: f32[2] = const dense<[2.0, 3.0]>
  %t: f32[3, 2] = aten.permute.default(%w, [1, 0])
  %addmm: f32[4, 2] = aten.addmm.default(%b, %x, %t)
  %bn: (f32[4, 2], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%addmm, none, none, %mean, %var, 0.1, 1e-05)
  %y: f32[4, 2] = getitem(%bn, 0)
  return (%y,)
}

# -----
# Statistics that are graph inputs (not frozen) cannot be folded.
# CHECK-LABEL: graph @stats_not_constant
# CHECK: aten._native_batch_norm_legit_no_training.default
graph @stats_not_constant(%x: f32[1, 2, 3, 3], %mean: f32[2], %var: f32[2]) {
  %w: f32[2, 2, 1, 1] = const dense<[1.0, 0.0, 0.0, 1.0]>
  %convolution: f32[1, 2, 3, 3] = aten.convolution.default(%x, %w, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %bn: (f32[1, 2, 3, 3], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%convolution, none, none, %mean, %var, 0.1, 1e-05)
  %y: f32[1, 2, 3, 3] = getitem(%bn, 0)
  return (%y,)
}

# -----
# The convolution's result is read elsewhere too: folding would change that reader.
# CHECK-LABEL: graph @conv_result_shared
# CHECK: aten._native_batch_norm_legit_no_training.default
graph @conv_result_shared(%x: f32[1, 1, 3, 3]) {
  %w: f32[1, 1, 1, 1] = const dense<[3.0]>
  %mean: f32[1] = const dense<[1.0]>
  %var: f32[1] = const dense<[1.0]>
  %convolution: f32[1, 1, 3, 3] = aten.convolution.default(%x, %w, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %bn: (f32[1, 1, 3, 3], f32[0], f32[0]) = aten._native_batch_norm_legit_no_training.default(%convolution, none, none, %mean, %var, 0.1, 1e-05)
  %y: f32[1, 1, 3, 3] = getitem(%bn, 0)
  %z: f32[1, 1, 3, 3] = aten.add.Tensor(%y, %convolution)
  return (%z,)
}
