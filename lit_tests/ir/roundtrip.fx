# RUN: %fastc-opt %s | filecheck %s
# RUN: %fastc-opt %s | %fastc-opt | filecheck %s

# Printing what was parsed gives the same text: symbolic sizes, tuples, keywords, dtypes,
# devices, strings, none, inf and nan.
# CHECK-LABEL: graph @everything(%x: f32[s0, 8], %s0: int, %i: i64[s0]) {
# CHECK-NEXT:   %c: bf16[2] = const dense<[1.0, -2.5]>
# CHECK-NEXT:   %sz: int = aten.sym_size.int(%x, 0)
# CHECK-NEXT:   %v: f32[s0, 2, 4] = aten.view.default(%x, [%sz, -1, 4])
# CHECK-NEXT:   %v2: f32[2*s0, 4] = aten.view.default(%x, [-1, 4])
# CHECK-NEXT:   %vm: (f32[8], f32[8]) = aten.var_mean.correction(%x, [0], correction=0, keepdim=false)
# CHECK-NEXT:   %m: f32[8] = getitem(%vm, 1)
# CHECK-NEXT:   %h: f16[s0, 8] = aten._to_copy.default(%x, dtype=torch.float16, layout=torch.strided, device=device("cpu"))
# CHECK-NEXT:   %f: f32[s0, 8] = aten.clamp.default(%x, -inf, inf)
# CHECK-NEXT:   %n: f32[s0, 8] = aten.nan_to_num.default(%f, nan, none, none)
# CHECK-NEXT:   %g: f32[s0, 8] = aten.gelu.default(%n, approximate="tanh")
# CHECK-NEXT:   return (%g, %m, none)
# CHECK-NEXT: }
graph @everything(%x: f32[s0, 8], %s0: int, %i: i64[s0]) {
  %c: bf16[2] = const dense<[1.0, -2.5]>
  %sz: int = aten.sym_size.int(%x, 0)
  %v: f32[s0, 2, 4] = aten.view.default(%x, [%sz, -1, 4])
  %v2: f32[2*s0, 4] = aten.view.default(%x, [-1, 4])
  %vm: (f32[8], f32[8]) = aten.var_mean.correction(%x, [0], correction=0, keepdim=false)
  %m: f32[8] = getitem(%vm, 1)
  %h: f16[s0, 8] = aten._to_copy.default(%x, dtype=torch.float16, layout=torch.strided, device=device("cpu"))
  %f: f32[s0, 8] = aten.clamp.default(%x, -inf, inf)
  %n: f32[s0, 8] = aten.nan_to_num.default(%f, nan, none, none)
  %g: f32[s0, 8] = aten.gelu.default(%n, approximate="tanh")
  return (%g, %m, none)
}
