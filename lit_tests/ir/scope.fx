# RUN: %fastc-opt --split-input-file %s | filecheck %s
# RUN: %fastc-opt --split-input-file %s | %fastc-opt --split-input-file | filecheck %s
# RUN: %fastc-opt --split-input-file -p cse,dead-code,plan-kernels %s | filecheck %s --check-prefix=PASSES

# `scope` is the module an op came from: a dotted path from the compiled module and, after `:`,
# the module's class. It prints after `kernel` and `kind`; an op of the compiled module itself
# has none. Printing what was parsed gives the same text.
# CHECK-LABEL: graph @two_layers(%x: f32[4, 8], %w0: f32[8, 8], %b0: f32[8], %w1: f32[8, 8], %b1: f32[8]) {
# CHECK-NEXT:   %t0: f32[8, 8] = aten.permute.default(%w0, [1, 0]) {scope = "layers.0.fc" : "Linear"}
# CHECK-NEXT:   %y0: f32[4, 8] = aten.addmm.default(%b0, %x, %t0) {scope = "layers.0.fc" : "Linear"}
# CHECK-NEXT:   %a0: f32[4, 8] = aten.relu.default(%y0) {kernel = 0, kind = "pointwise", scope = "layers.0.act" : "ReLU"}
# CHECK-NEXT:   %t1: f32[8, 8] = aten.permute.default(%w1, [1, 0]) {scope = "layers.1.fc" : "Linear"}
# CHECK-NEXT:   %y1: f32[4, 8] = aten.addmm.default(%b1, %a0, %t1) {scope = "layers.1.fc" : "Linear"}
# CHECK-NEXT:   %a1: f32[4, 8] = aten.relu.default(%y1) {scope = "layers.1.act"}
# CHECK-NEXT:   %r: f32[4, 8] = aten.add.Tensor(%a1, %x)
# CHECK-NEXT:   return (%r,)
# CHECK-NEXT: }

# Passes keep the scope of the ops they keep; plan-kernels adds its attributes before it.
# PASSES-LABEL: graph @two_layers
# PASSES:      %y0: f32[4, 8] = aten.addmm.default(%b0, %x, %t0) {kernel = {{[0-9]+}}, kind = "{{[a-z]+}}", scope = "layers.0.fc" : "Linear"}
# PASSES-NEXT: %a0: f32[4, 8] = aten.relu.default(%y0) {kernel = {{[0-9]+}}, kind = "{{[a-z]+}}", scope = "layers.0.act" : "ReLU"}
# PASSES:      %a1: f32[4, 8] = aten.relu.default(%y1) {kernel = {{[0-9]+}}, kind = "{{[a-z]+}}", scope = "layers.1.act"}
# PASSES-NEXT: %r: f32[4, 8] = aten.add.Tensor(%a1, %x) {kernel = {{[0-9]+}}, kind = "{{[a-z]+}}"}
graph @two_layers(%x: f32[4, 8], %w0: f32[8, 8], %b0: f32[8], %w1: f32[8, 8], %b1: f32[8]) {
  %t0: f32[8, 8] = aten.permute.default(%w0, [1, 0]) {scope = "layers.0.fc" : "Linear"}
  %y0: f32[4, 8] = aten.addmm.default(%b0, %x, %t0) {scope = "layers.0.fc" : "Linear"}
  %a0: f32[4, 8] = aten.relu.default(%y0) {kernel = 0, kind = "pointwise", scope = "layers.0.act" : "ReLU"}
  %t1: f32[8, 8] = aten.permute.default(%w1, [1, 0]) {scope = "layers.1.fc" : "Linear"}
  %y1: f32[4, 8] = aten.addmm.default(%b1, %a0, %t1) {scope = "layers.1.fc" : "Linear"}
  %a1: f32[4, 8] = aten.relu.default(%y1) {scope = "layers.1.act"}
  %r: f32[4, 8] = aten.add.Tensor(%a1, %x)
  return (%r,)
}

# -----
# Tied weights: both layers transpose the same weight. CSE keeps the first transpose, with its
# scope; the second layer's matmul keeps its own.
# CHECK-LABEL: graph @tied_weights(%x: f32[4, 8], %w: f32[8, 8]) {
# CHECK-NEXT:   %t0: f32[8, 8] = aten.permute.default(%w, [1, 0]) {scope = "layers.0.fc" : "Linear"}
# CHECK-NEXT:   %y0: f32[4, 8] = aten.mm.default(%x, %t0) {scope = "layers.0.fc" : "Linear"}
# CHECK-NEXT:   %t1: f32[8, 8] = aten.permute.default(%w, [1, 0]) {scope = "layers.1.fc" : "Linear"}
# CHECK-NEXT:   %y1: f32[4, 8] = aten.mm.default(%y0, %t1) {scope = "layers.1.fc" : "Linear"}
# PASSES-LABEL: graph @tied_weights
# PASSES:      %t0: f32[8, 8] = aten.permute.default(%w, [1, 0]) {scope = "layers.0.fc" : "Linear"}
# PASSES-NOT:  aten.permute.default
# PASSES:      %y1: f32[4, 8] = aten.mm.default(%y0, %t0) {kernel = {{[0-9]+}}, kind = "{{[a-z]+}}", scope = "layers.1.fc" : "Linear"}
graph @tied_weights(%x: f32[4, 8], %w: f32[8, 8]) {
  %t0: f32[8, 8] = aten.permute.default(%w, [1, 0]) {scope = "layers.0.fc" : "Linear"}
  %y0: f32[4, 8] = aten.mm.default(%x, %t0) {scope = "layers.0.fc" : "Linear"}
  %t1: f32[8, 8] = aten.permute.default(%w, [1, 0]) {scope = "layers.1.fc" : "Linear"}
  %y1: f32[4, 8] = aten.mm.default(%y0, %t1) {scope = "layers.1.fc" : "Linear"}
  return (%y1,)
}
