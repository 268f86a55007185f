"""Stage 06-vector-math: vectorizable float32 exp, erf and tanh for native kernels.

`math.exp`, `math.erf` and `math.tanh` would lower to scalar libm calls per element, which keeps
LLVM from vectorizing softmax, SiLU or GELU loops. `use_vector_math` replaces the f32 ones with
calls to functions made only of arithmetic LLVM vectorizes (inlined by the pipeline), an IR
rewrite: each op becomes a `func.call` of the helper, whose definition (MLIR source below) is
parsed into the module once, ahead of the kernels:

- `@fastc_expf`: Cody-Waite range reduction and a degree-6 polynomial (the classic Cephes expf
  scheme, under 1 ulp measured); overflow gives inf, underflow below the normal range 0.
- `@fastc_erff`, `@fastc_tanhf`: odd rational approximations on a clamped range (the
  coefficients XLA and Eigen use), measured within 4.3e-7 relative error of float64 results.

NaN stays NaN in all three.
"""
from __future__ import annotations

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


def _rational(name: str, clamp: float, alpha: list[float], beta: list[float], small: float | None) -> str:
    """f32 function x * P(x^2) / Q(x^2) on x clamped to [-clamp, clamp] (x itself below `small`)."""
    lines = [f"  func.func private @{name}(%x: f32) -> f32 {{",
             f"    %hi = arith.constant {clamp:.9e} : f32",
             f"    %lo = arith.constant {-clamp:.9e} : f32",
             "    %a = arith.minimumf %x, %hi : f32",
             "    %c = arith.maximumf %a, %lo : f32",
             "    %x2 = arith.mulf %c, %c : f32"]
    for tag, coefficients in (("p", alpha), ("q", beta)):
        lines.append(f"    %{tag}0 = arith.constant {coefficients[0]:.15e} : f32")
        for i, k in enumerate(coefficients[1:], 1):
            lines.append(f"    %{tag}k{i} = arith.constant {k:.15e} : f32")
            lines.append(f"    %{tag}{i} = math.fma %{tag}{i - 1}, %x2, %{tag}k{i} : f32")
    lines += [f"    %num = arith.mulf %c, %p{len(alpha) - 1} : f32",
              f"    %y = arith.divf %num, %q{len(beta) - 1} : f32"]
    if small is None:
        lines.append("    return %y : f32")
    else:
        lines += [f"    %small = arith.constant {small:.9e} : f32",
                  "    %ax = math.absf %x : f32",
                  "    %tiny = arith.cmpf olt, %ax, %small : f32",
                  "    %r = arith.select %tiny, %x, %y : f32",
                  # past the clamp the function is +-1 (x itself keeps a NaN)
                  "    %one = arith.constant 1.0 : f32",
                  "    %unit = math.copysign %one, %x : f32",
                  "    %big = arith.cmpf oge, %ax, %hi : f32",
                  "    %s = arith.select %big, %unit, %r : f32",
                  "    return %s : f32"]
    return "\n".join(lines) + "\n  }\n"


ERFF = _rational("fastc_erff", 4.0,
                 [-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06, -5.69250639462346e-05,
                  -7.34990630326855e-04, -2.95459980854025e-03, -1.60960333262415e-02],
                 [-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03, -7.37332916720468e-03,
                  -1.42647390514189e-02], None)

TANHF = _rational("fastc_tanhf", 7.90531110763549805,
                  [-2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11, 5.12229709037114e-08,
                   1.48572235717979e-05, 6.37261928875436e-04, 4.89352455891786e-03],
                  [1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03, 4.89352518554385e-03],
                  0.0004)

FUNCTIONS = {"exp": ("fastc_expf", EXPF), "erf": ("fastc_erff", ERFF), "tanh": ("fastc_tanhf", TANHF)}


def use_vector_math(module) -> int:
    """Replaces the scalar f32 `math.exp`/`erf`/`tanh` ops of `module` by calls to the helpers
    above (a fastmath flag on the op is dropped: the helpers' arithmetic is as written) and
    defines the helpers used; returns how many ops were replaced."""
    from torch_mlir import ir
    from torch_mlir.dialects import func
    f32 = ir.F32Type.get(module.context)
    found = []

    def visit(op):
        if op.name in _REPLACED and len(op.results) == 1 and op.results[0].type == f32:
            found.append(op)
        return ir.WalkResult.ADVANCE
    module.operation.walk(visit)
    used = set()
    for op in found:
        helper = FUNCTIONS[_REPLACED[op.name]][0]
        with ir.InsertionPoint(op), op.location:
            call = func.CallOp([f32], helper, [op.operands[0]])
        op.results[0].replace_all_uses_with(call.result)
        op.erase()
        used.add(helper)
    _define(module, used)
    return len(found)


_REPLACED = {f"math.{name}": name for name in FUNCTIONS}


def _define(module, helpers: set[str]) -> None:
    """Parses the definitions of `helpers` into `module`, at its start, in name order; a helper
    the module defines already is left as it is."""
    from torch_mlir import ir
    defined = ir.SymbolTable(module.operation)
    definitions = {name: text for name, text in FUNCTIONS.values()}
    for name in sorted(helpers, reverse=True):  # each goes first: name order in the end
        if name in defined:
            continue
        op = ir.Operation.parse(definitions[name], context=module.context)
        ir.InsertionPoint.at_block_begin(module.body).insert(op)
