# RUN: %fastc-opt --split-input-file -p grouped-kv-attention %s | filecheck %s

# LLaMA's repeat_kv (unsqueeze, expand, contiguous copy, view) before SDPA's CPU kernel: the
# kernel reads the two k / v heads as they are, and the copies go.
# CHECK-LABEL: graph @gqa
# CHECK-NOT: aten.clone
# CHECK-NOT: aten.expand
# CHECK: %o: (f32[1, 4, 3, 2], f32[1, 4, 3]) = aten._scaled_dot_product_flash_attention_for_cpu.default(%q, %k, %v, scale=0.5)
graph @gqa(%q: f32[1, 4, 3, 2], %k: f32[1, 2, 3, 2], %v: f32[1, 2, 3, 2]) {
  %ku: f32[1, 2, 1, 3, 2] = aten.unsqueeze.default(%k, 2)
  %ke: f32[1, 2, 2, 3, 2] = aten.expand.default(%ku, [1, 2, 2, 3, 2])
  %kc: f32[1, 2, 2, 3, 2] = aten.clone.default(%ke, memory_format=torch.contiguous_format)
  %kr: f32[1, 4, 3, 2] = aten.view.default(%kc, [1, 4, 3, 2])
  %vu: f32[1, 2, 1, 3, 2] = aten.unsqueeze.default(%v, 2)
  %ve: f32[1, 2, 2, 3, 2] = aten.expand.default(%vu, [1, 2, 2, 3, 2])
  %vc: f32[1, 2, 2, 3, 2] = aten.clone.default(%ve, memory_format=torch.contiguous_format)
  %vr: f32[1, 4, 3, 2] = aten.view.default(%vc, [1, 4, 3, 2])
  %o: (f32[1, 4, 3, 2], f32[1, 4, 3]) = aten._scaled_dot_product_flash_attention_for_cpu.default(%q, %kr, %vr, scale=0.5)
  %y: f32[1, 4, 3, 2] = getitem(%o, 0)
  return (%y,)
}

# -----
# The repeated keys are read elsewhere too: the copy stays and so does the attention's input.
# CHECK-LABEL: graph @copy_read_elsewhere
# CHECK: aten._scaled_dot_product_flash_attention_for_cpu.default(%q, %kr, %vr, scale=0.5)
graph @copy_read_elsewhere(%q: f32[1, 4, 3, 2], %k: f32[1, 2, 3, 2], %v: f32[1, 2, 3, 2]) {
  %ku: f32[1, 2, 1, 3, 2] = aten.unsqueeze.default(%k, 2)
  %ke: f32[1, 2, 2, 3, 2] = aten.expand.default(%ku, [1, 2, 2, 3, 2])
  %kc: f32[1, 2, 2, 3, 2] = aten.clone.default(%ke, memory_format=torch.contiguous_format)
  %kr: f32[1, 4, 3, 2] = aten.view.default(%kc, [1, 4, 3, 2])
  %vu: f32[1, 2, 1, 3, 2] = aten.unsqueeze.default(%v, 2)
  %ve: f32[1, 2, 2, 3, 2] = aten.expand.default(%vu, [1, 2, 2, 3, 2])
  %vc: f32[1, 2, 2, 3, 2] = aten.clone.default(%ve, memory_format=torch.contiguous_format)
  %vr: f32[1, 4, 3, 2] = aten.view.default(%vc, [1, 4, 3, 2])
  %o: (f32[1, 4, 3, 2], f32[1, 4, 3]) = aten._scaled_dot_product_flash_attention_for_cpu.default(%q, %kr, %vr, scale=0.5)
  %y: f32[1, 4, 3, 2] = getitem(%o, 0)
  %s: f32[1, 2, 2, 3, 2] = aten.mul.Tensor(%kc, 2.0)
  return (%y, %s)
}
