"""MLIR text of the native CPU BCQ linear (scf / vector / memref / arith), for cpu_native.py.

One function per specialisation (bits, in, out, group size, scale dtype, bias or not):

    func @bcq_linear(%x: memref<?xINxf32>, %bits: memref<BxWxNxi32>, %scales: memref<BxGxNx{f16,f32}>,
                     [%bias: memref<Nxf32>,] %y: memref<?xNxf32>)

Algorithm (sign-select, vectorised across `vl` consecutive output rows, which the packed layout
stores next to each other): with S_g = sum of x over group g,

    B_i x (over group g) = 2 * sum_{k in g, bit_ik = 1} x_k - S_g

so each weight bit costs one masked add (`acc = select(bit, acc + x_k, acc)`: AVX-512 masked
`vaddps`, or add + blend on AVX2); the mask of a column is the word shifted so that its bit lands
in the sign bit (shared by all `rows` rows of a register block). Per group and plane,
`y += alpha * (2 * acc - S_g)`. The S_g are computed once per call (serial prologue), the output
blocks of `vl` rows are an scf.parallel loop (OpenMP when lowered with convert-scf-to-openmp), and
rows of x are processed `rows` at a time (one compiled body per remainder 1..rows-1).

Group sizes: a multiple of 32 (a group is whole words) or a divisor of 32 (a word holds whole
groups; `in` need not be a multiple of 32 then: the last word's padding bits are never read).
"""
from __future__ import annotations

import math


class Unsupported(ValueError):
    """The native kernel does not handle this shape (the caller falls back)."""


def check_shape(bits: int, in_features: int, out_features: int, group_size: int, vl: int) -> None:
    if not 1 <= bits <= 8:
        raise Unsupported(f"native BCQ kernel: bits must be 1..8, got {bits}")
    if in_features % group_size:
        raise Unsupported(f"native BCQ kernel: in_features={in_features} is not a multiple of "
                          f"group_size={group_size}")
    if group_size % 32 and 32 % group_size:
        raise Unsupported(f"native BCQ kernel: group_size must be a multiple or a divisor of 32, "
                          f"got {group_size}")
    if out_features % vl:
        raise Unsupported(f"native BCQ kernel: out_features={out_features} must be padded to a "
                          f"multiple of {vl}")


class _Emitter:
    def __init__(self):
        self.lines: list[str] = []
        self.n = 0
        self.indent = 2

    def fresh(self, stem="v") -> str:
        self.n += 1
        return f"%{stem}{self.n}"

    def line(self, text: str) -> None:
        self.lines.append("  " * self.indent + text)

    def op(self, text: str, stem="v") -> str:
        name = self.fresh(stem)
        self.line(f"{name} = {text}")
        return name


def module_text(bits: int, in_features: int, out_features: int, group_size: int, scale_dtype: str,
                has_bias: bool, vl: int = 16, rows: int = 4, name: str = "bcq_linear") -> str:
    """Text of a module holding `name` (C interface) for one specialisation."""
    check_shape(bits, in_features, out_features, group_size, vl)
    if scale_dtype not in ("f16", "f32"):
        raise Unsupported(f"native BCQ kernel: scales must be f16 or f32, got {scale_dtype}")
    words = -(-in_features // 32)
    groups = in_features // group_size
    n = out_features
    t = dict(x="memref<?x%dxf32>" % in_features, bits="memref<%dx%dx%dxi32>" % (bits, words, n),
             scales="memref<%dx%dx%dx%s>" % (bits, groups, n, scale_dtype), bias="memref<%dxf32>" % n,
             y="memref<?x%dxf32>" % n, s="memref<?x%dxf32>" % groups)
    shape = _Shape(bits, in_features, n, group_size, scale_dtype, has_bias, vl, t)
    parts = ["module {"]
    for r in range(1, rows + 1):
        parts.append(_body_function(shape, r))
    parts.append(_entry_function(shape, rows, name))
    parts.append("}")
    return "\n".join(parts)


class _Shape:
    def __init__(self, bits, in_features, n, group_size, scale_dtype, has_bias, vl, types):
        self.bits, self.in_features, self.n, self.group_size = bits, in_features, n, group_size
        self.scale_dtype, self.has_bias, self.vl, self.t = scale_dtype, has_bias, vl, types
        self.words = -(-in_features // 32)
        self.groups = in_features // group_size

    @property
    def vf(self):
        return f"vector<{self.vl}xf32>"

    @property
    def vi(self):
        return f"vector<{self.vl}xi32>"

    def args(self) -> str:
        t = self.t
        bias = f"%bias: {t['bias']}, " if self.has_bias else ""
        return f"%x: {t['x']}, %bits: {t['bits']}, %scales: {t['scales']}, {bias}%y: {t['y']}, %s: {t['s']}"

    def arg_names(self) -> str:
        return "%x, %bits, %scales, " + ("%bias, " if self.has_bias else "") + "%y, %s"

    def arg_types(self) -> str:
        t = self.t
        return ", ".join([t["x"], t["bits"], t["scales"]] + ([t["bias"]] if self.has_bias else [])
                         + [t["y"], t["s"]])


def _body_function(sh: _Shape, rows: int) -> str:
    """func @body_R(args..., %r0, %n0): rows r0..r0+R-1 of y, outputs n0..n0+vl-1."""
    e = _Emitter()
    vf, vi, vl = sh.vf, sh.vi, sh.vl
    e.line(f"%zf = arith.constant dense<0.0> : {vf}")
    e.line(f"%zi = arith.constant dense<0> : {vi}")
    e.line(f"%two = arith.constant dense<2.0> : {vf}")
    for c in sorted({0, 1, sh.groups, sh.words, sh.in_features // 32, sh.group_size // 32 or 1}):
        e.line(f"%c{c} = arith.constant {c} : index")
    for j in range(32):
        e.line(f"%sh{j} = arith.constant dense<{31 - j}> : {vi}")
    for i in range(sh.bits):
        e.line(f"%p{i} = arith.constant {i} : index")
    row = ["%r0"] + [None] * (rows - 1)
    for m in range(1, rows):
        cm = e.op(f"arith.constant {m} : index")
        row[m] = e.op(f"arith.addi %r0, {cm} : index")
    if sh.has_bias:
        init = e.op(f"vector.load %bias[%n0] : {sh.t['bias']}, {vf}")
    else:
        init = "%zf"

    def columns(plane_words: list[str], k_base: str, bit0: int, count: int, accs: list[list[str]]):
        """Masked adds of columns k_base + (0..count) (bits bit0.. of each plane's word)."""
        for j in range(count):
            k = e.op(f"arith.addi {k_base}, {e_const(e, bit0 + j)} : index")
            xs = []
            for m in range(rows):
                s = e.op(f"memref.load %x[{row[m]}, {k}] : {sh.t['x']}")
                xs.append(e.op(f"vector.broadcast {s} : f32 to {vf}"))
            for i in range(sh.bits):
                shifted = e.op(f"arith.shli {plane_words[i]}, %sh{bit0 + j} : {vi}")
                mask = e.op(f"arith.cmpi slt, {shifted}, %zi : {vi}")
                for m in range(rows):
                    added = e.op(f"arith.addf {accs[i][m]}, {xs[m]} : {vf}")
                    accs[i][m] = e.op(f"arith.select {mask}, {added}, {accs[i][m]} : vector<{vl}xi1>, {vf}")

    def finish_group(g: str, accs: list[list[str]], ys: list[str]) -> list[str]:
        ys = list(ys)
        for m in range(rows):
            s = e.op(f"memref.load %s[{row[m]}, {g}] : {sh.t['s']}")
            sb = e.op(f"vector.broadcast {s} : f32 to {vf}")
            for i in range(sh.bits):
                raw = e.op(f"vector.load %scales[%p{i}, {g}, %n0] : {sh.t['scales']}, vector<{vl}x{sh.scale_dtype}>")
                alpha = raw if sh.scale_dtype == "f32" else e.op(f"arith.extf {raw} : vector<{vl}xf16> to {vf}")
                doubled = e.op(f"arith.mulf {accs[i][m]}, %two : {vf}")
                binary = e.op(f"arith.subf {doubled}, {sb} : {vf}")
                ys[m] = e.op(f"vector.fma {alpha}, {binary}, {ys[m]} : {vf}")
        return ys

    def load_words(w: str) -> list[str]:
        return [e.op(f"vector.load %bits[%p{i}, {w}, %n0] : {sh.t['bits']}, {vi}") for i in range(sh.bits)]

    ytypes = ", ".join([vf] * rows)
    if sh.group_size % 32 == 0:
        wpg = sh.group_size // 32
        # All accumulators live in registers: planes x rows vectors, carried by the word loop.
        ys_in = [f"%yi{m}" for m in range(rows)]
        res = e.fresh("res")
        e.line(f"{res}:{rows} = scf.for %g = %c0 to %c{sh.groups} step %c1 iter_args("
               + ", ".join(f"{y} = {init}" for y in ys_in) + f") -> ({ytypes}) {{")
        e.indent += 1
        nacc = sh.bits * rows
        acc_in = [f"%ai{a}" for a in range(nacc)]
        w0 = e.op(f"arith.muli %g, %c{wpg} : index")
        accres = e.fresh("acc")
        e.line(f"{accres}:{nacc} = scf.for %wl = %c0 to %c{wpg} step %c1 iter_args("
               + ", ".join(f"{a} = %zf" for a in acc_in) + f") -> ({', '.join([vf] * nacc)}) {{")
        e.indent += 1
        w = e.op(f"arith.addi {w0}, %wl : index")
        kb = e.op(f"arith.muli {w}, {e_const(e, 32)} : index")
        accs = [[acc_in[i * rows + m] for m in range(rows)] for i in range(sh.bits)]
        columns(load_words(w), kb, 0, 32, accs)
        e.line("scf.yield " + ", ".join(a for plane in accs for a in plane) + f" : {', '.join([vf] * nacc)}")
        e.indent -= 1
        e.line("}")
        accs = [[f"{accres}#{i * rows + m}" for m in range(rows)] for i in range(sh.bits)]
        ys = finish_group("%g", accs, ys_in)
        e.line("scf.yield " + ", ".join(ys) + f" : {ytypes}")
        e.indent -= 1
        e.line("}")
        final = [f"{res}#{m}" for m in range(rows)]
    else:
        gpw = 32 // sh.group_size
        full = sh.in_features // 32
        tail_groups = (sh.in_features % 32) // sh.group_size

        def one_word(w: str, ngroups: int, ys: list[str]) -> list[str]:
            words = load_words(w)
            kb = e.op(f"arith.muli {w}, {e_const(e, 32)} : index")
            gb = e.op(f"arith.muli {w}, {e_const(e, gpw)} : index")
            for p in range(ngroups):
                accs = [["%zf"] * rows for _ in range(sh.bits)]
                columns(words, kb, p * sh.group_size, sh.group_size, accs)
                g = e.op(f"arith.addi {gb}, {e_const(e, p)} : index")
                ys = finish_group(g, accs, ys)
            return ys

        ys_in = [f"%yi{m}" for m in range(rows)]
        ys = [init] * rows
        if full:
            res = e.fresh("res")
            e.line(f"{res}:{rows} = scf.for %w = %c0 to %c{full} step %c1 iter_args("
                   + ", ".join(f"{y} = {init}" for y in ys_in) + f") -> ({ytypes}) {{")
            e.indent += 1
            e.line("scf.yield " + ", ".join(one_word("%w", gpw, ys_in)) + f" : {ytypes}")
            e.indent -= 1
            e.line("}")
            ys = [f"{res}#{m}" for m in range(rows)]
        if tail_groups:
            ys = one_word(e_const(e, full), tail_groups, ys)
        final = ys
    for m in range(rows):
        e.line(f"vector.store {final[m]}, %y[{row[m]}, %n0] : {sh.t['y']}, {vf}")
    e.line("return")
    head = (f"  func.func private @body_{rows}({sh.args()}, %r0: index, %n0: index) "
            f"attributes {{llvm.linkage = #llvm.linkage<internal>}} {{")
    return "\n".join([head] + e.lines + ["  }"])


def e_const(e: _Emitter, value: int) -> str:
    return e.op(f"arith.constant {value} : index", "k")


def _entry_function(sh: _Shape, rows: int, name: str) -> str:
    """The C-interface entry: group sums of x (serial), then output blocks in parallel."""
    t = sh.t
    bias = f"%bias: {t['bias']}, " if sh.has_bias else ""
    blocks = sh.n // sh.vl
    lines = [
        f"  func.func @{name}(%x: {t['x']}, %bits: {t['bits']}, %scales: {t['scales']}, {bias}"
        f"%y: {t['y']}) attributes {{llvm.emit_c_interface}} {{",
        "    %c0 = arith.constant 0 : index",
        "    %c1 = arith.constant 1 : index",
        f"    %cR = arith.constant {rows} : index",
        f"    %cG = arith.constant {sh.groups} : index",
        f"    %cgs = arith.constant {sh.group_size} : index",
        f"    %cvl = arith.constant {sh.vl} : index",
        f"    %cB = arith.constant {blocks} : index",
        "    %f0 = arith.constant 0.0 : f32",
        f"    %M = memref.dim %x, %c0 : {t['x']}",
        f"    %s = memref.alloc(%M) {{alignment = 64 : i64}} : {t['s']}",
        "    scf.for %m = %c0 to %M step %c1 {",
        "      scf.for %g = %c0 to %cG step %c1 {",
        "        %k0 = arith.muli %g, %cgs : index",
        "        %sum = scf.for %k = %c0 to %cgs step %c1 iter_args(%a = %f0) -> (f32) {",
        "          %kk = arith.addi %k0, %k : index",
        f"          %xv = memref.load %x[%m, %kk] : {t['x']}",
        "          %a2 = arith.addf %a, %xv : f32",
        "          scf.yield %a2 : f32",
        "        }",
        f"        memref.store %sum, %s[%m, %g] : {t['s']}",
        "      }",
        "    }",
        "    %Mq = arith.divui %M, %cR : index",
        "    %Mfull = arith.muli %Mq, %cR : index",
        "    %rem = arith.subi %M, %Mfull : index",
        "    scf.parallel (%b) = (%c0) to (%cB) step (%c1) {",
        "      %n0 = arith.muli %b, %cvl : index",
        f"      func.call @block({sh.arg_names()}, %n0, %Mfull, %rem) : ({sh.arg_types()}, index, index, index) -> ()",
        "      scf.reduce",
        "    }",
        f"    memref.dealloc %s : {t['s']}",
        "    return",
        "  }",
        # One block of vl outputs, all rows: a function of its own, so that the parallel loop's
        # body (an alloca scope after convert-scf-to-openmp) is a single block.
        f"  func.func private @block({sh.args()}, %n0: index, %Mfull: index, %rem: index) "
        "attributes {llvm.linkage = #llvm.linkage<internal>} {",
        "    %c0 = arith.constant 0 : index",
        f"    %cR = arith.constant {rows} : index",
        "    scf.for %r0 = %c0 to %Mfull step %cR {",
        f"      func.call @body_{rows}({sh.arg_names()}, %r0, %n0) : ({sh.arg_types()}, index, index) -> ()",
        "    }",
    ]
    if rows > 1:
        lines.append("    scf.index_switch %rem")
        for r in range(1, rows):
            lines += [f"    case {r} {{",
                      f"      func.call @body_{r}({sh.arg_names()}, %Mfull, %n0) : ({sh.arg_types()}, index, index) -> ()",
                      "      scf.yield", "    }"]
        lines += ["    default {", "      scf.yield", "    }"]
    lines += ["    return", "  }"]
    return "\n".join(lines)


def padded_out(out_features: int, vl: int) -> int:
    return vl * math.ceil(out_features / vl)


def dequant_module_text(bits: int, in_features: int, out_features: int, group_size: int,
                        scale_dtype: str, vl: int = 16, name: str = "bcq_dequant_t") -> str:
    """Text of a module holding `name`(%bits, %scales, %wt: memref<IN x OUT x f32>): the dense
    weight, transposed, W^T[k, n] = sum_i alpha_i[k / gs, n] * (bit_i(k, n) ? 1 : -1). Column by
    column (dynamic shifts; the kernel is bound by writing W^T), output blocks in parallel."""
    if in_features % group_size or out_features % vl:
        raise Unsupported(f"native BCQ dequantize: in_features={in_features} must be a multiple of "
                          f"group_size={group_size} and out={out_features} of {vl}")
    words = -(-in_features // 32)
    groups = in_features // group_size
    n = out_features
    tb = "memref<%dx%dx%dxi32>" % (bits, words, n)
    ts = "memref<%dx%dx%dx%s>" % (bits, groups, n, scale_dtype)
    tw = "memref<%dx%dxf32>" % (in_features, n)
    vf, vi, vs = f"vector<{vl}xf32>", f"vector<{vl}xi32>", f"vector<{vl}x{scale_dtype}>"
    body = []
    for i in range(bits):
        body += [f"      %w{i} = vector.load %bits[%p{i}, %word, %n0] : {tb}, {vi}",
                 f"      %t{i} = arith.shli %w{i}, %shv : {vi}",
                 f"      %m{i} = arith.cmpi slt, %t{i}, %zi : {vi}",
                 f"      %r{i} = vector.load %scales[%p{i}, %g, %n0] : {ts}, {vs}"]
        body.append(f"      %a{i} = arith.extf %r{i} : {vs} to {vf}" if scale_dtype == "f16"
                    else f"      %a{i} = arith.addf %r{i}, %zf : {vf}")
        body += [f"      %na{i} = arith.negf %a{i} : {vf}",
                 f"      %s{i} = arith.select %m{i}, %a{i}, %na{i} : vector<{vl}xi1>, {vf}"]
        prev = "%zf" if i == 0 else f"%u{i - 1}"
        body.append(f"      %u{i} = arith.addf {prev}, %s{i} : {vf}")
    lines = [
        "module {",
        f"  func.func private @dq_block(%bits: {tb}, %scales: {ts}, %wt: {tw}, %n0: index) "
        "attributes {llvm.linkage = #llvm.linkage<internal>} {",
        "    %c0 = arith.constant 0 : index",
        "    %c1 = arith.constant 1 : index",
        "    %c32 = arith.constant 32 : index",
        "    %c31 = arith.constant 31 : i32",
        f"    %cgs = arith.constant {group_size} : index",
        f"    %cin = arith.constant {in_features} : index",
        f"    %zi = arith.constant dense<0> : {vi}",
        f"    %zf = arith.constant dense<0.0> : {vf}",
        *[f"    %p{i} = arith.constant {i} : index" for i in range(bits)],
        "    scf.for %k = %c0 to %cin step %c1 {",
        "      %word = arith.divui %k, %c32 : index",
        "      %g = arith.divui %k, %cgs : index",
        "      %j = arith.remui %k, %c32 : index",
        "      %ji = arith.index_cast %j : index to i32",
        "      %sh = arith.subi %c31, %ji : i32",
        f"      %shv = vector.broadcast %sh : i32 to {vi}",
        *body,
        f"      vector.store %u{bits - 1}, %wt[%k, %n0] : {tw}, {vf}",
        "    }",
        "    return",
        "  }",
        f"  func.func @{name}(%bits: {tb}, %scales: {ts}, %wt: {tw}) attributes {{llvm.emit_c_interface}} {{",
        "    %c0 = arith.constant 0 : index",
        "    %c1 = arith.constant 1 : index",
        f"    %cvl = arith.constant {vl} : index",
        f"    %cB = arith.constant {n // vl} : index",
        "    scf.parallel (%b) = (%c0) to (%cB) step (%c1) {",
        "      %n0 = arith.muli %b, %cvl : index",
        f"      func.call @dq_block(%bits, %scales, %wt, %n0) : ({tb}, {ts}, {tw}, index) -> ()",
        "      scf.reduce",
        "    }",
        "    return",
        "  }",
        "}"]
    return "\n".join(lines)
