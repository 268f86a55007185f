# RUN: %fastc-opt --split-input-file -p fuse-attention,dead-code %s | filecheck %s

# softmax(q @ k^T * 0.5) @ v as an ATen graph has it (q, k, v: [2, 3, 4, 8], folded to 3-D
# products over contiguous copies): one scaled_dot_product_attention.
# CHECK-LABEL: graph @attention
# CHECK-NOT: aten.bmm
# CHECK-NOT: aten._softmax
# CHECK: %_softmax_sdpa: f32[2, 3, 4, 8] = aten.scaled_dot_product_attention.default(%q, %k, %v, none, 0.0, false, scale=0.5)
# CHECK-NEXT: %p: f32[2, 4, 3, 8] = aten.permute.default(%_softmax_sdpa, [0, 2, 1, 3])
graph @attention(%q: f32[2, 3, 4, 8], %k: f32[2, 3, 4, 8], %v: f32[2, 3, 4, 8]) {
  %kt: f32[2, 3, 8, 4] = aten.permute.default(%k, [0, 1, 3, 2])
  %qc: f32[2, 3, 4, 8] = aten.clone.default(%q, memory_format=torch.contiguous_format)
  %q3: f32[6, 4, 8] = aten.view.default(%qc, [6, 4, 8])
  %kc: f32[2, 3, 8, 4] = aten.clone.default(%kt, memory_format=torch.contiguous_format)
  %k3: f32[6, 8, 4] = aten.view.default(%kc, [6, 8, 4])
  %s3: f32[6, 4, 4] = aten.bmm.default(%q3, %k3)
  %s: f32[2, 3, 4, 4] = aten.view.default(%s3, [2, 3, 4, 4])
  %scaled: f32[2, 3, 4, 4] = aten.mul.Tensor(%s, 0.5)
  %_softmax: f32[2, 3, 4, 4] = aten._softmax.default(%scaled, -1, false)
  %p3: f32[6, 4, 4] = aten.view.default(%_softmax, [6, 4, 4])
  %vc: f32[2, 3, 4, 8] = aten.clone.default(%v, memory_format=torch.contiguous_format)
  %v3: f32[6, 4, 8] = aten.view.default(%vc, [6, 4, 8])
  %o3: f32[6, 4, 8] = aten.bmm.default(%p3, %v3)
  %o: f32[2, 3, 4, 8] = aten.view.default(%o3, [2, 3, 4, 8])
  %p: f32[2, 4, 3, 8] = aten.permute.default(%o, [0, 2, 1, 3])
  %y: f32[2, 4, 3, 8] = aten.clone.default(%p, memory_format=torch.contiguous_format)
  return (%y,)
}

# -----
# Dividing by sqrt(d) and an additive mask; the output read through a view that needs it
# contiguous (SDPA writes rows before heads): it reads a contiguous copy.
# CHECK-LABEL: graph @masked
# CHECK: %_softmax_sdpa: f32[2, 3, 4, 8] = aten.scaled_dot_product_attention.default(%q, %k, %v, %mask, 0.0, false, scale=0.25)
# CHECK-NEXT: %_softmax_sdpa_contiguous: f32[2, 3, 4, 8] = aten.clone.default(%_softmax_sdpa, memory_format=torch.contiguous_format)
# CHECK-NEXT: %y: f32[6, 32] = aten.view.default(%_softmax_sdpa_contiguous, [6, 32])
graph @masked(%q: f32[2, 3, 4, 8], %k: f32[2, 3, 4, 8], %v: f32[2, 3, 4, 8], %mask: f32[2, 1, 4, 4]) {
  %kt: f32[2, 3, 8, 4] = aten.transpose.int(%k, -2, -1)
  %qc: f32[2, 3, 4, 8] = aten.expand.default(%q, [2, 3, 4, 8])
  %q3: f32[6, 4, 8] = aten.view.default(%qc, [6, 4, 8])
  %kc: f32[2, 3, 8, 4] = aten.clone.default(%kt, memory_format=torch.contiguous_format)
  %k3: f32[6, 8, 4] = aten._unsafe_view.default(%kc, [6, 8, 4])
  %s3: f32[6, 4, 4] = aten.bmm.default(%q3, %k3)
  %s: f32[2, 3, 4, 4] = aten.view.default(%s3, [2, 3, 4, 4])
  %scaled: f32[2, 3, 4, 4] = aten.div.Tensor(%s, 4.0)
  %masked: f32[2, 3, 4, 4] = aten.add.Tensor(%scaled, %mask)
  %_softmax: f32[2, 3, 4, 4] = aten._softmax.default(%masked, -1, false)
  %p3: f32[6, 4, 4] = aten.view.default(%_softmax, [6, 4, 4])
  %vc: f32[2, 3, 4, 8] = aten.clone.default(%v, memory_format=torch.contiguous_format)
  %v3: f32[6, 4, 8] = aten.view.default(%vc, [6, 4, 8])
  %o3: f32[6, 4, 8] = aten.bmm.default(%p3, %v3)
  %o: f32[2, 3, 4, 8] = aten.view.default(%o3, [2, 3, 4, 8])
  %y: f32[6, 32] = aten.view.default(%o, [6, 32])
  return (%y,)
}

# -----
# The probabilities are read twice (returned too, as a training graph keeps them for its
# backward): left as it is.
# CHECK-LABEL: graph @probabilities_kept
# CHECK-NOT: scaled_dot_product_attention
# CHECK: aten._softmax.default
graph @probabilities_kept(%q: f32[2, 3, 4, 8], %k: f32[2, 3, 4, 8], %v: f32[2, 3, 4, 8]) {
  %kt: f32[2, 3, 8, 4] = aten.permute.default(%k, [0, 1, 3, 2])
  %qc: f32[2, 3, 4, 8] = aten.clone.default(%q, memory_format=torch.contiguous_format)
  %q3: f32[6, 4, 8] = aten.view.default(%qc, [6, 4, 8])
  %kc: f32[2, 3, 8, 4] = aten.clone.default(%kt, memory_format=torch.contiguous_format)
  %k3: f32[6, 8, 4] = aten.view.default(%kc, [6, 8, 4])
  %s3: f32[6, 4, 4] = aten.bmm.default(%q3, %k3)
  %s: f32[2, 3, 4, 4] = aten.view.default(%s3, [2, 3, 4, 4])
  %_softmax: f32[2, 3, 4, 4] = aten._softmax.default(%s, -1, false)
  %p3: f32[6, 4, 4] = aten.view.default(%_softmax, [6, 4, 4])
  %vc: f32[2, 3, 4, 8] = aten.clone.default(%v, memory_format=torch.contiguous_format)
  %v3: f32[6, 4, 8] = aten.view.default(%vc, [6, 4, 8])
  %o3: f32[6, 4, 8] = aten.bmm.default(%p3, %v3)
  %o: f32[2, 3, 4, 8] = aten.view.default(%o3, [2, 3, 4, 8])
  return (%o, %_softmax)
}
