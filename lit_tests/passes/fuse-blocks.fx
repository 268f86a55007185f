# RUN: %fastc-opt --split-input-file -p fuse-blocks %s | filecheck %s

# A ConvFirst block: grouped 3x3 conv, 1x1 expansion with GELU, 1x1 projection, the input added.
# CHECK-LABEL: graph @convfirst
# CHECK: %y_block: f32[2, 4, 5, 5] = fastc.convfirst_block.default(%x, %ws, %bs, 2, %we, %be, "gelu", [], %wp, %bp)
# CHECK-NOT: aten.
# CHECK: return (%y_block,)
graph @convfirst(%x: f32[2, 4, 5, 5]) {
  %ws: f32[4, 2, 3, 3] = const dense<[0.25]>
  %bs: f32[4] = const dense<[0.5]>
  %we: f32[8, 4, 1, 1] = const dense<[-0.5]>
  %be: f32[8] = const dense<[0.125]>
  %wp: f32[4, 8, 1, 1] = const dense<[0.75]>
  %bp: f32[4] = const dense<[-0.25]>
  %s: f32[2, 4, 5, 5] = aten.convolution.default(%x, %ws, %bs, [1, 1], [1, 1], [1, 1], false, [0, 0], 2)
  %e: f32[2, 8, 5, 5] = aten.convolution.default(%s, %we, %be, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %h: f32[2, 8, 5, 5] = aten.gelu.default(%e)
  %p: f32[2, 4, 5, 5] = aten.convolution.default(%h, %wp, %bp, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %y: f32[2, 4, 5, 5] = aten.add.Tensor(%x, %p)
  return (%y,)
}

# -----
# MobileNetV2's inverted residual as HF writes it: the depthwise conv's padding an explicit
# constant_pad_nd; relu6 as hardtanh(0, 6).
# CHECK-LABEL: graph @mbconv
# CHECK: %y_block: f32[1, 4, 4, 4] = fastc.mbconv_block.default(%x, %we, %be, "hardtanh", [0.0, 6.0], %wd, %bd, "hardtanh", [0.0, 6.0], %wp, none)
# CHECK-NOT: aten.
graph @mbconv(%x: f32[1, 4, 4, 4]) {
  %we: f32[12, 4, 1, 1] = const dense<[0.5]>
  %be: f32[12] = const dense<[0.1]>
  %wd: f32[12, 1, 3, 3] = const dense<[-0.25]>
  %bd: f32[12] = const dense<[0.2]>
  %wp: f32[4, 12, 1, 1] = const dense<[0.3]>
  %e: f32[1, 12, 4, 4] = aten.convolution.default(%x, %we, %be, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %a: f32[1, 12, 4, 4] = aten.hardtanh.default(%e, 0.0, 6.0)
  %pad: f32[1, 12, 6, 6] = aten.constant_pad_nd.default(%a, [1, 1, 1, 1], 0.0)
  %d: f32[1, 12, 4, 4] = aten.convolution.default(%pad, %wd, %bd, [1, 1], [0, 0], [1, 1], false, [0, 0], 12)
  %a2: f32[1, 12, 4, 4] = aten.hardtanh.default(%d, 0.0, 6.0)
  %p: f32[1, 4, 4, 4] = aten.convolution.default(%a2, %wp, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %y: f32[1, 4, 4, 4] = aten.add.Tensor(%p, %x)
  return (%y,)
}

# -----
# A pre-norm transformer MLP as an ATen graph has it: layer norm, view -> addmm -> view, GELU,
# view -> addmm -> view, a dropout's clone, the residual add. The (in, out) operands of addmm
# become (out, in) weights.
# CHECK-LABEL: graph @mlp
# CHECK: %y_block: f32[2, 3, 4] = fastc.mlp_block.default(%x, "layer", %lw, %lb, 1e-05, %y_weight, %b1, none, none, "gelu", [], %y_weight_1, %b2)
# CHECK-NOT: aten.addmm
graph @mlp(%x: f32[2, 3, 4]) {
  %lw: f32[4] = const dense<[1.0]>
  %lb: f32[4] = const dense<[0.0]>
  %w1: f32[4, 8] = const dense<[0.5]>
  %b1: f32[8] = const dense<[0.1]>
  %w2: f32[8, 4] = const dense<[-0.5]>
  %b2: f32[4] = const dense<[0.2]>
  %ln: (f32[2, 3, 4], f32[2, 3, 1], f32[2, 3, 1]) = aten.native_layer_norm.default(%x, [4], %lw, %lb, 1e-05)
  %n: f32[2, 3, 4] = getitem(%ln, 0)
  %v1: f32[6, 4] = aten.view.default(%n, [6, 4])
  %m1: f32[6, 8] = aten.addmm.default(%b1, %v1, %w1)
  %u1: f32[2, 3, 8] = aten.view.default(%m1, [2, 3, 8])
  %g: f32[2, 3, 8] = aten.gelu.default(%u1)
  %v2: f32[6, 8] = aten.view.default(%g, [6, 8])
  %m2: f32[6, 4] = aten.addmm.default(%b2, %v2, %w2)
  %u2: f32[2, 3, 4] = aten.view.default(%m2, [2, 3, 4])
  %c: f32[2, 3, 4] = aten.clone.default(%u2)
  %y: f32[2, 3, 4] = aten.add.Tensor(%x, %c)
  return (%y,)
}

# -----
# LLaMA's MLP: RMS norm spelled out, silu(gate) * up (silu as x * sigmoid(x)), no biases.
# CHECK-LABEL: graph @swiglu
# CHECK: fastc.mlp_block.default(%x, "rms", %nw, none, 1e-06, %y_weight, none, %y_weight_1, none, "silu", [], %y_weight_2, none)
# CHECK-NOT: aten.mm
graph @swiglu(%x: f32[2, 4]) {
  %nw: f32[4] = const dense<[1.5]>
  %wg: f32[4, 8] = const dense<[0.5]>
  %wu: f32[4, 8] = const dense<[0.25]>
  %wd: f32[8, 4] = const dense<[-0.5]>
  %sq: f32[2, 4] = aten.pow.Tensor_Scalar(%x, 2)
  %ms: f32[2, 1] = aten.mean.dim(%sq, [-1], true)
  %eps: f32[2, 1] = aten.add.Tensor(%ms, 1e-06)
  %r: f32[2, 1] = aten.rsqrt.default(%eps)
  %xr: f32[2, 4] = aten.mul.Tensor(%x, %r)
  %n: f32[2, 4] = aten.mul.Tensor(%nw, %xr)
  %g: f32[2, 8] = aten.mm.default(%n, %wg)
  %sg: f32[2, 8] = aten.sigmoid.default(%g)
  %a: f32[2, 8] = aten.mul.Tensor(%g, %sg)
  %u: f32[2, 8] = aten.mm.default(%n, %wu)
  %h: f32[2, 8] = aten.mul.Tensor(%a, %u)
  %d: f32[2, 4] = aten.mm.default(%h, %wd)
  %y: f32[2, 4] = aten.add.Tensor(%x, %d)
  return (%y,)
}

# -----
# Not convex: the expansion's activation is also a graph output, so the block stays as it is.
# CHECK-LABEL: graph @read_outside
# CHECK-NOT: fastc.
# CHECK: return (%y, %h)
graph @read_outside(%x: f32[1, 2, 3, 3]) {
  %ws: f32[2, 1, 3, 3] = const dense<[0.25]>
  %we: f32[4, 2, 1, 1] = const dense<[-0.5]>
  %wp: f32[2, 4, 1, 1] = const dense<[0.75]>
  %s: f32[1, 2, 3, 3] = aten.convolution.default(%x, %ws, none, [1, 1], [1, 1], [1, 1], false, [0, 0], 2)
  %e: f32[1, 4, 3, 3] = aten.convolution.default(%s, %we, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %h: f32[1, 4, 3, 3] = aten.relu.default(%e)
  %p: f32[1, 2, 3, 3] = aten.convolution.default(%h, %wp, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %y: f32[1, 2, 3, 3] = aten.add.Tensor(%x, %p)
  return (%y, %h)
}

# -----
# ConvNeXt as HF writes it: depthwise 7x7, permute channels-last, layer norm, two linear layers
# with GELU, the layer scale, permute back, the input added. The norm's affine folds into the
# expansion and the layer scale into the projection: four new constants.
# CHECK-LABEL: graph @convnext
# CHECK: %y_block: f32[1, 4, 3, 3] = fastc.convnext_block.default(%x, %wd, %bd, 4, 1e-06, %y_expand_weight, %y_expand_bias, "gelu", [], %y_project_weight, %y_project_bias)
# CHECK-NOT: aten.
graph @convnext(%x: f32[1, 4, 3, 3]) {
  %wd: f32[4, 1, 7, 7] = const dense<[0.25]>
  %bd: f32[4] = const dense<[0.5]>
  %lw: f32[4] = const dense<[1.5]>
  %lb: f32[4] = const dense<[0.25]>
  %w1: f32[4, 16] = const dense<[0.5]>
  %b1: f32[16] = const dense<[0.1]>
  %w2: f32[16, 4] = const dense<[-0.5]>
  %b2: f32[4] = const dense<[0.2]>
  %g: f32[4] = const dense<[0.01]>
  %c: f32[1, 4, 3, 3] = aten.convolution.default(%x, %wd, %bd, [1, 1], [3, 3], [1, 1], false, [0, 0], 4)
  %p: f32[1, 3, 3, 4] = aten.permute.default(%c, [0, 2, 3, 1])
  %ln: (f32[1, 3, 3, 4], f32[1, 3, 3, 1], f32[1, 3, 3, 1]) = aten.native_layer_norm.default(%p, [4], %lw, %lb, 1e-06)
  %n: f32[1, 3, 3, 4] = getitem(%ln, 0)
  %v1: f32[9, 4] = aten.view.default(%n, [9, 4])
  %m1: f32[9, 16] = aten.addmm.default(%b1, %v1, %w1)
  %u1: f32[1, 3, 3, 16] = aten.view.default(%m1, [1, 3, 3, 16])
  %a: f32[1, 3, 3, 16] = aten.gelu.default(%u1)
  %v2: f32[9, 16] = aten.view.default(%a, [9, 16])
  %m2: f32[9, 4] = aten.addmm.default(%b2, %v2, %w2)
  %u2: f32[1, 3, 3, 4] = aten.view.default(%m2, [1, 3, 3, 4])
  %s: f32[1, 3, 3, 4] = aten.mul.Tensor(%g, %u2)
  %q: f32[1, 4, 3, 3] = aten.permute.default(%s, [0, 3, 1, 2])
  %y: f32[1, 4, 3, 3] = aten.add.Tensor(%x, %q)
  return (%y,)
}

# -----
# GPT-2's MLP: the tanh GELU spelled out (NewGELUActivation), Conv1D's addmm on (in, out) weights.
# CHECK-LABEL: graph @gpt2_mlp
# CHECK: fastc.mlp_block.default(%x, "layer", %lw, %lb, 1e-05, %y_weight, %b1, none, none, "gelu-tanh", [], %y_weight_1, %b2)
# CHECK-NOT: aten.tanh
graph @gpt2_mlp(%x: f32[4, 4]) {
  %lw: f32[4] = const dense<[1.0]>
  %lb: f32[4] = const dense<[0.0]>
  %w1: f32[4, 8] = const dense<[0.5]>
  %b1: f32[8] = const dense<[0.1]>
  %w2: f32[8, 4] = const dense<[-0.5]>
  %b2: f32[4] = const dense<[0.2]>
  %ln: (f32[4, 4], f32[4, 1], f32[4, 1]) = aten.native_layer_norm.default(%x, [4], %lw, %lb, 1e-05)
  %n: f32[4, 4] = getitem(%ln, 0)
  %u: f32[4, 8] = aten.addmm.default(%b1, %n, %w1)
  %half: f32[4, 8] = aten.mul.Tensor(%u, 0.5)
  %cube: f32[4, 8] = aten.pow.Tensor_Scalar(%u, 3.0)
  %cs: f32[4, 8] = aten.mul.Tensor(%cube, 0.044715)
  %inner: f32[4, 8] = aten.add.Tensor(%u, %cs)
  %scaled: f32[4, 8] = aten.mul.Tensor(%inner, 0.7978845608028654)
  %t: f32[4, 8] = aten.tanh.default(%scaled)
  %onep: f32[4, 8] = aten.add.Tensor(%t, 1.0)
  %g: f32[4, 8] = aten.mul.Tensor(%half, %onep)
  %d: f32[4, 4] = aten.addmm.default(%b2, %g, %w2)
  %y: f32[4, 4] = aten.add.Tensor(%x, %d)
  return (%y,)
}

# -----
# MobileNetV2's strided inverted block without a residual, as HF writes it: TF "same" padding as
# a zero constant_pad_nd [0, 1, 0, 1] before the unpadded stride-2 depthwise conv; more channels out.
# CHECK-LABEL: graph @inverted
# CHECK: %p_block: f32[1, 6, 2, 2] = fastc.inverted_block.default(%x, %we, none, "hardtanh", [0.0, 6.0], %wd, none, 2, [0, 1, 0, 1], "hardtanh", [0.0, 6.0], %wp, %bp)
# CHECK-NOT: aten.
graph @inverted(%x: f32[1, 4, 4, 4]) {
  %we: f32[12, 4, 1, 1] = const dense<[0.5]>
  %wd: f32[12, 1, 3, 3] = const dense<[-0.25]>
  %wp: f32[6, 12, 1, 1] = const dense<[0.3]>
  %bp: f32[6] = const dense<[0.1]>
  %e: f32[1, 12, 4, 4] = aten.convolution.default(%x, %we, none, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  %a: f32[1, 12, 4, 4] = aten.hardtanh.default(%e, 0.0, 6.0)
  %pad: f32[1, 12, 5, 5] = aten.constant_pad_nd.default(%a, [0, 1, 0, 1], 0.0)
  %d: f32[1, 12, 2, 2] = aten.convolution.default(%pad, %wd, none, [2, 2], [0, 0], [1, 1], false, [0, 0], 12)
  %a2: f32[1, 12, 2, 2] = aten.hardtanh.default(%d, 0.0, 6.0)
  %p: f32[1, 6, 2, 2] = aten.convolution.default(%a2, %wp, %bp, [1, 1], [0, 0], [1, 1], false, [0, 0], 1)
  return (%p,)
}
