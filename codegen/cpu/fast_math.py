"""Vectorizable float32 exp for native kernels.

`math.exp` would lower to a scalar call to libm's expf per element, which keeps LLVM from
vectorizing softmax, sigmoid or SiLU loops. `use_vector_exp` replaces those calls with
`@fastc_expf`, an inlined Cody-Waite range reduction and degree-6 polynomial (the classic Cephes
expf scheme, about 1 ulp) made only of arithmetic LLVM vectorizes. Overflow gives inf,
underflow below the normal range gives 0, NaN stays NaN.
"""
from __future__ import annotations

import re

_EXP_F32 = re.compile(r"^(\s*%[\w.#]+ = )math\.exp (%[\w.#]+)(?: fastmath<[a-z,]+>)? : f32$", re.M)

EXPF = """  func.func private @fastc_expf(%x: f32) -> f32 {
    %hi = arith.constant 88.7228394 : f32
    %lo = arith.constant -87.3365479 : f32
    %log2e = arith.constant 1.44269504 : f32
    %ln2hi = arith.constant 0.693359375 : f32
    %ln2lo = arith.constant -2.12194440e-04 : f32
    %c0 = arith.constant 1.98756915e-04 : f32
    %c1 = arith.constant 1.39819995e-03 : f32
    %c2 = arith.constant 8.33345190e-03 : f32
    %c3 = arith.constant 4.16657959e-02 : f32
    %c4 = arith.constant 1.66666655e-01 : f32
    %c5 = arith.constant 5.00000012e-01 : f32
    %one = arith.constant 1.0 : f32
    %zero = arith.constant 0.0 : f32
    %inf = arith.constant 0x7F800000 : f32
    %bias = arith.constant 127 : i32
    %shift = arith.constant 23 : i32
    %a = arith.minnumf %x, %hi : f32
    %b = arith.maxnumf %a, %lo : f32
    %t = arith.mulf %b, %log2e : f32
    %n = math.roundeven %t : f32
    %m1 = arith.mulf %n, %ln2hi : f32
    %r1 = arith.subf %b, %m1 : f32
    %m2 = arith.mulf %n, %ln2lo : f32
    %r = arith.subf %r1, %m2 : f32
    %p0 = math.fma %c0, %r, %c1 : f32
    %p1 = math.fma %p0, %r, %c2 : f32
    %p2 = math.fma %p1, %r, %c3 : f32
    %p3 = math.fma %p2, %r, %c4 : f32
    %p4 = math.fma %p3, %r, %c5 : f32
    %r2 = arith.mulf %r, %r : f32
    %p5 = math.fma %p4, %r2, %r : f32
    %p = arith.addf %p5, %one : f32
    %ni = arith.fptosi %n : f32 to i32
    %e = arith.addi %ni, %bias : i32
    %bits = arith.shli %e, %shift : i32
    %scale = arith.bitcast %bits : i32 to f32
    %y = arith.mulf %p, %scale : f32
    %over = arith.cmpf ogt, %x, %hi : f32
    %y1 = arith.select %over, %inf, %y : f32
    %under = arith.cmpf olt, %x, %lo : f32
    %y2 = arith.select %under, %zero, %y1 : f32
    %nan = arith.cmpf uno, %x, %x : f32
    %y3 = arith.select %nan, %x, %y2 : f32
    return %y3 : f32
  }
"""


def use_vector_exp(module_text: str) -> tuple[str, bool]:
    """(`module_text` with f32 `math.exp` calling @fastc_expf, whether any was replaced)."""
    text, count = _EXP_F32.subn(lambda m: f"{m.group(1)}func.call @fastc_expf({m.group(2)}) : (f32) -> f32",
                                module_text)
    return text, count > 0
