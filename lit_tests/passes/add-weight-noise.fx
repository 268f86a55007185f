# RUN: %fastc-opt -p 'add-weight-noise{relative_std=0.5,seed=1}' %s | filecheck %s
# RUN: %fastc-opt -p 'add-weight-noise{relative_std=0.0}' %s | filecheck %s --check-prefix=ZERO
# RUN: not %fastc-opt -p 'add-weight-noise{relative_std=-1}' %s 2>&1 | filecheck %s --check-prefix=NEGATIVE

# The weight gets seeded Gaussian noise (new values); the bias, not a weight, stays.
# CHECK-LABEL: graph @linear
# CHECK: %w_noisy: f32[2, 3] = const dense<
# CHECK-NOT: dense<[1.0, -2.0, 3.0, -4.0, 0.5, 6.0]>
# CHECK: %b: f32[2] = const dense<[0.5, -0.25]>
# CHECK: aten.permute.default(%w_noisy, [1, 0])
# Without noise, nothing changes.
# ZERO: %w: f32[2, 3] = const dense<[1.0, -2.0, 3.0, -4.0, 0.5, 6.0]>
# ZERO-NOT: _noisy
# NEGATIVE: fastc-opt: error: pass 'add-weight-noise': option relative_std=-1.0 is not valid (expected a finite number >= 0)
graph @linear(%x: f32[4, 3]) {
  %w: f32[2, 3] = const dense<[1.0, -2.0, 3.0, -4.0, 0.5, 6.0]>
  %b: f32[2] = const dense<[0.5, -0.25]>
  %t: f32[3, 2] = aten.permute.default(%w, [1, 0])
  %y: f32[4, 2] = aten.addmm.default(%b, %x, %t)
  return (%y,)
}
