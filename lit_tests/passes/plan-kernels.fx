# RUN: %fastc-opt --split-input-file -p plan-kernels %s | filecheck %s
# RUN: %fastc-opt --split-input-file -p 'plan-kernels{epilogues=false}' %s | filecheck %s --check-prefix=NOEPI
# RUN: %fastc-opt --split-input-file -p 'plan-kernels{products=false}' %s | filecheck %s --check-prefix=NOPROD

# A chain of pointwise ops is one kernel.
# CHECK-LABEL: graph @pointwise_chain
# CHECK: %a: f32[4, 8] = aten.mul.Tensor(%x, %y) {kernel = 0, kind = "pointwise"}
# CHECK-NEXT: %b: f32[4, 8] = aten.exp.default(%a) {kernel = 0, kind = "pointwise"}
# CHECK-NEXT: %c: f32[4, 8] = aten.relu.default(%b) {kernel = 0, kind = "pointwise"}
graph @pointwise_chain(%x: f32[4, 8], %y: f32[8]) {
  %a: f32[4, 8] = aten.mul.Tensor(%x, %y)
  %b: f32[4, 8] = aten.exp.default(%a)
  %c: f32[4, 8] = aten.relu.default(%b)
  return (%c,)
}

# -----
# RMS norm: the reduction with its pointwise producer and consumers, one kernel.
# CHECK-LABEL: graph @rms_norm
# CHECK: %sq: f32[2, 16] = aten.pow.Tensor_Scalar(%x, 2) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %ms: f32[2, 1] = aten.mean.dim(%sq, [-1], true) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %e: f32[2, 1] = aten.add.Scalar(%ms, 1e-06) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %r: f32[2, 1] = aten.rsqrt.default(%e) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %n: f32[2, 16] = aten.mul.Tensor(%x, %r) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %o: f32[2, 16] = aten.mul.Tensor(%n, %w) {kernel = 0, kind = "reduction"}
graph @rms_norm(%x: f32[2, 16], %w: f32[16]) {
  %sq: f32[2, 16] = aten.pow.Tensor_Scalar(%x, 2)
  %ms: f32[2, 1] = aten.mean.dim(%sq, [-1], true)
  %e: f32[2, 1] = aten.add.Scalar(%ms, 1e-06)
  %r: f32[2, 1] = aten.rsqrt.default(%e)
  %n: f32[2, 16] = aten.mul.Tensor(%x, %r)
  %o: f32[2, 16] = aten.mul.Tensor(%n, %w)
  return (%o,)
}

# -----
# A matrix product with its epilogue (bias, reshape, activation, residual add); the next matrix
# product starts a new kernel.
# CHECK-LABEL: graph @linear_gelu_residual
# CHECK: %mm: f32[6, 8] = aten.mm.default(%x, %w) {kernel = 0, kind = "matmul"}
# CHECK-NEXT: %b: f32[6, 8] = aten.add.Tensor(%mm, %bias) {kernel = 0, kind = "matmul"}
# CHECK-NEXT: %v: f32[2, 3, 8] = aten.view.default(%b, [2, 3, 8]) {kernel = 0, kind = "matmul"}
# CHECK-NEXT: %g: f32[2, 3, 8] = aten.gelu.default(%v) {kernel = 0, kind = "matmul"}
# CHECK-NEXT: %r: f32[2, 3, 8] = aten.add.Tensor(%g, %res) {kernel = 0, kind = "matmul"}
# CHECK-NEXT: %v2: f32[6, 8] = aten.view.default(%r, [6, 8])
# CHECK-NOT: kernel = 0
# CHECK-NEXT: %mm2: f32[6, 8] = aten.mm.default(%v2, %w2) {kernel = 1, kind = "matmul"}
# NOEPI-LABEL: graph @linear_gelu_residual
# NOEPI: %mm: f32[6, 8] = aten.mm.default(%x, %w) {kernel = 0, kind = "matmul"}
# NOEPI-NEXT: %b: f32[6, 8] = aten.add.Tensor(%mm, %bias) {kernel = 1, kind = "pointwise"}
# Without products in kernels (the native CPU target) the products stay ATen calls and the
# epilogue is a pointwise kernel of its own.
# NOPROD-LABEL: graph @linear_gelu_residual
# NOPROD: %mm: f32[6, 8] = aten.mm.default(%x, %w){{$}}
# NOPROD-NEXT: %b: f32[6, 8] = aten.add.Tensor(%mm, %bias) {kernel = 0, kind = "pointwise"}
# NOPROD-NEXT: %v: f32[2, 3, 8] = aten.view.default(%b, [2, 3, 8]) {kernel = 0, kind = "pointwise"}
# NOPROD-NEXT: %g: f32[2, 3, 8] = aten.gelu.default(%v) {kernel = 0, kind = "pointwise"}
# NOPROD-NEXT: %r: f32[2, 3, 8] = aten.add.Tensor(%g, %res) {kernel = 0, kind = "pointwise"}
# NOPROD-NEXT: %v2: f32[6, 8] = aten.view.default(%r, [6, 8]){{$}}
# NOPROD-NEXT: %mm2: f32[6, 8] = aten.mm.default(%v2, %w2){{$}}
graph @linear_gelu_residual(%x: f32[6, 4], %w: f32[4, 8], %bias: f32[8], %res: f32[2, 3, 8], %w2: f32[8, 8]) {
  %mm: f32[6, 8] = aten.mm.default(%x, %w)
  %b: f32[6, 8] = aten.add.Tensor(%mm, %bias)
  %v: f32[2, 3, 8] = aten.view.default(%b, [2, 3, 8])
  %g: f32[2, 3, 8] = aten.gelu.default(%v)
  %r: f32[2, 3, 8] = aten.add.Tensor(%g, %res)
  %v2: f32[6, 8] = aten.view.default(%r, [6, 8])
  %mm2: f32[6, 8] = aten.mm.default(%v2, %w2)
  return (%mm2, %r)
}

# -----
# Fusing %a and %c would make a cycle through %s (not fusable): two kernels, in an order that
# keeps each kernel's ops together.
# CHECK-LABEL: graph @no_cycles
# CHECK: %a: f32[8] = aten.exp.default(%x) {kernel = 0, kind = "pointwise"}
# CHECK: %s: (f32[8], i64[8]) = aten.sort.default
# CHECK: %c: f32[8] = aten.add.Tensor(%a, %v) {kernel = 1, kind = "pointwise"}
graph @no_cycles(%x: f32[8]) {
  %a: f32[8] = aten.exp.default(%x)
  %s: (f32[8], i64[8]) = aten.sort.default(%a)
  %v: f32[8] = getitem(%s, 0)
  %c: f32[8] = aten.add.Tensor(%a, %v)
  return (%c,)
}

# -----
# A permute of a kernel value is not fused (it would reorder elements): it stays an ATen view.
# Random ops are never fused.
# CHECK-LABEL: graph @views_and_random
# CHECK: %a: f32[4, 8] = aten.exp.default(%x) {kernel = 0, kind = "pointwise"}
# CHECK-NEXT: %p: f32[8, 4] = aten.permute.default(%a, [1, 0])
# CHECK-NEXT: %b: f32[8, 4] = aten.neg.default(%p) {kernel = 1, kind = "pointwise"}
# CHECK: %u: f32[8, 4] = aten.rand_like.default(%b)
# CHECK-NOT: kernel
graph @views_and_random(%x: f32[4, 8]) {
  %a: f32[4, 8] = aten.exp.default(%x)
  %p: f32[8, 4] = aten.permute.default(%a, [1, 0])
  %b: f32[8, 4] = aten.neg.default(%p)
  %u: f32[8, 4] = aten.rand_like.default(%b)
  return (%u,)
}

# -----
# Pointwise ops over different numbers of elements are separate kernels.
# CHECK-LABEL: graph @different_sizes
# CHECK: %a: f32[4, 1] = aten.exp.default(%x) {kernel = 0, kind = "pointwise"}
# CHECK-NEXT: %b: f32[4, 8] = aten.mul.Tensor(%a, %y) {kernel = 1, kind = "pointwise"}
graph @different_sizes(%x: f32[4, 1], %y: f32[4, 8]) {
  %a: f32[4, 1] = aten.exp.default(%x)
  %b: f32[4, 8] = aten.mul.Tensor(%a, %y)
  return (%b,)
}

# -----
# A reduction over dim 0 of a 0-d tensor reduces nothing: it stays an ATen op (regression: the
# planner crashed on it).
# CHECK-LABEL: graph @zero_dim_reduction
# CHECK: %s: f32[] = aten.sum.dim_IntList(%x, [0]){{$}}
graph @zero_dim_reduction(%x: f32[]) {
  %s: f32[] = aten.sum.dim_IntList(%x, [0])
  return (%s,)
}

# -----
# What is planned is the op table's call (fastc.ir.op_table): max.dim (with its getitems) and
# prod reduce the same rows, one kernel with their consumer; lgamma, which no code generator
# lowers, stays an ATen call between kernels.
# CHECK-LABEL: graph @op_table
# CHECK: %m: (f32[4], i64[4]) = aten.max.dim(%x, 1) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %v: f32[4] = getitem(%m, 0) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %i: i64[4] = getitem(%m, 1) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %p: f32[4] = aten.prod.dim_int(%x, 1) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %s: f32[4] = aten.add.Tensor(%v, %p) {kernel = 0, kind = "reduction"}
# CHECK-NEXT: %g: f32[4] = aten.lgamma.default(%s){{$}}
# CHECK-NEXT: %e: f32[4] = aten.exp.default(%g) {kernel = 1, kind = "pointwise"}
graph @op_table(%x: f32[4, 8]) {
  %m: (f32[4], i64[4]) = aten.max.dim(%x, 1)
  %v: f32[4] = getitem(%m, 0)
  %i: i64[4] = getitem(%m, 1)
  %p: f32[4] = aten.prod.dim_int(%x, 1)
  %s: f32[4] = aten.add.Tensor(%v, %p)
  %g: f32[4] = aten.lgamma.default(%s)
  %e: f32[4] = aten.exp.default(%g)
  return (%e, %i)
}
