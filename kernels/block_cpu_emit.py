"""The pieces the native CPU block kernels are written with (block_cpu_ir.py writes one module per
block from them): an MLIR text emitter (`Fn`), activations in registers, the register-tiled
micro-kernel (`gemm`), the grouped / depthwise convolution on a flat band (`conv`), buffer copies,
and the entry points running a module's chunks on torch's libgomp threads (`entry_text`).

  * `gemm`: out[m, p] = sum_k A[m, k] * B[k, p]: MR rows x NR pixels of vector accumulators, the
    k loop broadcasting MR scalars of A (a weight packed at compile time as [M/MR, K, MR], or rows
    of a local buffer) and loading NR pixels of B; the epilogue (bias, activation, residual) runs
    on the accumulators before the store.
  * `conv`: a grouped / depthwise k x k convolution (stride 1, padding k // 2) on a band of rows
    kept flat ([channels, rows * W]), vectorised along the flat pixel index, so that narrow images
    (W = 2, 4) still fill vectors; the column borders are masked loads (masks computed once per
    pixel tile), the row borders are zero rows of the band buffer.
  * activations in registers (exp and erfc are polynomial / rational approximations written here:
    relative error about 1e-7).
"""
from __future__ import annotations

import math

V = 16                 # lanes of a full vector (AVX-512)
PIXELS_OUTER = True    # gemm loop order (see gemm)
SLACK = 16             # floats before / after band buffers (masked loads may point outside)
ACTS = ("none", "relu", "hardtanh", "gelu", "gelu-tanh", "silu", "sigmoid", "tanh", "hardswish")


class Unsupported(ValueError):
    """The block kernel does not handle this problem (the message says why)."""


def _f(v: float) -> str:
    return f"{float(v):.9e}" if math.isfinite(v) else ("0x7F800000" if v > 0 else "0xFF800000")


def vt(n: int) -> str:
    return f"vector<{n}xf32>"


class Fn:
    """A function body under construction: SSA names, constants hoisted to the prologue."""

    def __init__(self):
        self.pro: list[str] = []
        self.body: list[str] = []
        self.n = 0
        self.ind = 2
        self.consts: dict = {}
        self.types: dict[str, str] = {}

    def tmp(self) -> str:
        self.n += 1
        return f"%t{self.n}"

    def emit(self, text: str) -> None:
        self.body.append("  " * self.ind + text)

    def op(self, text: str) -> str:
        name = self.tmp()
        self.emit(f"{name} = {text}")
        return name

    def _const(self, key, text) -> str:
        name = self.consts.get(key)
        if name is None:
            self.n += 1
            name = f"%k{self.n}"
            self.pro.append(f"    {name} = {text}")
            self.consts[key] = name
        return name

    def ci(self, v: int) -> str:
        return self._const(("i", v), f"arith.constant {int(v)} : index")

    def cf(self, v: float, n: int = 0) -> str:
        if n == 0:
            return self._const(("f", float(v)), f"arith.constant {_f(v)} : f32")
        return self._const(("vf", float(v), n), f"arith.constant dense<{_f(v)}> : {vt(n)}")

    def cvi(self, v: int, n: int) -> str:
        return self._const(("vi", v, n), f"arith.constant dense<{int(v)}> : vector<{n}xi32>")

    def iota(self, n: int) -> str:
        return self._const(("iota", n), f"arith.constant dense<[{', '.join(str(i) for i in range(n))}]> : vector<{n}xi32>")

    # index arithmetic (ints fold)
    def add(self, a, b):
        if isinstance(a, int) and isinstance(b, int):
            return a + b
        if isinstance(b, int) and b == 0:
            return a
        if isinstance(a, int) and a == 0:
            return b
        return self.op(f"arith.addi {self.idx(a)}, {self.idx(b)} : index")

    def mul(self, a, b):
        if isinstance(a, int) and isinstance(b, int):
            return a * b
        if isinstance(b, int) and b == 1:
            return a
        if isinstance(a, int) and a == 1:
            return b
        if (isinstance(a, int) and a == 0) or (isinstance(b, int) and b == 0):
            return 0
        return self.op(f"arith.muli {self.idx(a)}, {self.idx(b)} : index")

    def idx(self, a) -> str:
        return self.ci(a) if isinstance(a, int) else a

    # memory
    def vload(self, buf: str, i, n: int) -> str:
        return self.op(f"vector.load {buf}[{self.idx(i)}] : {self.types[buf]}, {vt(n)}")

    def vstore(self, v: str, buf: str, i, n: int) -> None:
        self.emit(f"vector.store {v}, {buf}[{self.idx(i)}] : {self.types[buf]}, {vt(n)}")

    def mload(self, buf: str, i, mask: str, n: int) -> str:
        return self.op(f"vector.maskedload {buf}[{self.idx(i)}], {mask}, {self.cf(0.0, n)} : "
                       f"{self.types[buf]}, vector<{n}xi1>, {vt(n)} into {vt(n)}")

    def sload(self, buf: str, i) -> str:
        return self.op(f"memref.load {buf}[{self.idx(i)}] : {self.types[buf]}")

    def bcast(self, s: str, n: int) -> str:
        return self.op(f"vector.broadcast {s} : f32 to {vt(n)}")

    def fma(self, a, b, c, n) -> str:
        return self.op(f"vector.fma {a}, {b}, {c} : {vt(n)}")

    def bin(self, name: str, a: str, b: str, n: int) -> str:
        return self.op(f"arith.{name} {a}, {b} : {vt(n)}")

    # loops
    def for_(self, lo, hi, step=1, iters: list[tuple[str, str]] | None = None, results: int = 0):
        """Opens `scf.for`; returns (iv, iter names, result name). Close with end_for(yields)."""
        iv = self.tmp()
        iters = iters or []
        res = self.tmp() if iters else None
        head = f"scf.for {iv} = {self.idx(lo)} to {self.idx(hi)} step {self.idx(step)}"
        names = []
        if iters:
            parts = []
            for init, ty in iters:
                nm = self.tmp()
                names.append(nm)
                parts.append(f"{nm} = {init}")
            head = f"{res}:{len(iters)} = " + head + f" iter_args({', '.join(parts)}) -> ({', '.join(t for _, t in iters)})"
        self.emit(head + " {")
        self.ind += 1
        self._yield_types = [t for _, t in iters]
        return iv, names, res

    def end_for(self, yields: list[str] | None = None, types: list[str] | None = None) -> None:
        if yields:
            self.emit(f"scf.yield {', '.join(yields)} : {', '.join(types)}")
        self.ind -= 1
        self.emit("}")


# -- activations -----------------------------------------------------------------------------------
def _exp(f: Fn, x: str, n: int) -> str:
    """exp(x), relative error ~1e-7 (range reduction to [-ln2/2, ln2/2], degree-7 Taylor)."""
    x = f.op(f"arith.minimumf {x}, {f.cf(88.7, n)} : {vt(n)}")
    x = f.op(f"arith.maximumf {x}, {f.cf(-87.3, n)} : {vt(n)}")
    t = f.fma(x, f.cf(1.4426950408889634, n), f.cf(0.5, n), n)
    k = f.op(f"math.floor {t} : {vt(n)}")
    r = f.fma(k, f.cf(-0.693359375, n), x, n)                  # ln2 split: hi exact in fp32
    r = f.fma(k, f.cf(2.12194440e-4, n), r, n)
    p = f.cf(1.0 / 5040, n)
    for c in (1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5, 1.0, 1.0):
        p = f.fma(p, r, f.cf(c, n), n)
    ki = f.op(f"arith.fptosi {k} : {vt(n)} to vector<{n}xi32>")
    ki = f.op(f"arith.addi {ki}, {f.cvi(127, n)} : vector<{n}xi32>")
    ki = f.op(f"arith.shli {ki}, {f.cvi(23, n)} : vector<{n}xi32>")
    scale = f.op(f"arith.bitcast {ki} : vector<{n}xi32> to {vt(n)}")
    return f.bin("mulf", p, scale, n)


def _erfc_pos(f: Fn, z: str, n: int) -> str:
    """erfc(z) for z >= 0, relative error < 1.2e-7 (the Chebyshev fit of Numerical Recipes' erfcc)."""
    t = f.op(f"arith.divf {f.cf(1.0, n)}, {f.fma(z, f.cf(0.5, n), f.cf(1.0, n), n)} : {vt(n)}")
    coeffs = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807, -0.18628806,
              0.09678418, 0.37409196, 1.00002368, -1.26551223)
    p = f.cf(coeffs[0], n)
    for c in coeffs[1:]:
        p = f.fma(p, t, f.cf(c, n), n)
    zz = f.bin("mulf", z, z, n)
    e = _exp(f, f.bin("subf", p, zz, n), n)
    return f.bin("mulf", t, e, n)


def _sigmoid(f: Fn, x: str, n: int) -> str:
    e = _exp(f, f.bin("subf", f.cf(0.0, n), x, n), n)
    return f.op(f"arith.divf {f.cf(1.0, n)}, {f.bin('addf', e, f.cf(1.0, n), n)} : {vt(n)}")


def _tanh(f: Fn, x: str, n: int) -> str:
    """tanh(x) = sign(x) (1 - 2 / (exp(2|x|) + 1))."""
    a = f.op(f"math.absf {x} : {vt(n)}")
    e = _exp(f, f.bin("addf", a, a, n), n)
    q = f.op(f"arith.divf {f.cf(2.0, n)}, {f.bin('addf', e, f.cf(1.0, n), n)} : {vt(n)}")
    t = f.bin("subf", f.cf(1.0, n), q, n)
    return f.op(f"math.copysign {t}, {x} : {vt(n)}")


def act(f: Fn, v: str, n: int, name: str, args) -> str:
    if name == "none":
        return v
    if name == "relu":
        return f.op(f"arith.maximumf {v}, {f.cf(0.0, n)} : {vt(n)}")
    if name == "hardtanh":
        lo, hi = (float(a) for a in args)
        v = f.op(f"arith.maximumf {v}, {f.cf(lo, n)} : {vt(n)}")
        return f.op(f"arith.minimumf {v}, {f.cf(hi, n)} : {vt(n)}")
    if name == "gelu":
        # 0.5 x (1 + erf(x / sqrt 2)) = 0.5 x erfc(-x / sqrt 2)
        z = f.bin("mulf", v, f.cf(-1.0 / math.sqrt(2.0), n), n)
        az = f.op(f"math.absf {z} : {vt(n)}")
        ec = _erfc_pos(f, az, n)
        neg = f.op(f"arith.cmpf olt, {z}, {f.cf(0.0, n)} : {vt(n)}")
        two = f.bin("subf", f.cf(2.0, n), ec, n)
        e = f.op(f"arith.select {neg}, {two}, {ec} : vector<{n}xi1>, {vt(n)}")
        return f.bin("mulf", f.bin("mulf", v, f.cf(0.5, n), n), e, n)
    if name == "gelu-tanh":
        v3 = f.bin("mulf", f.bin("mulf", v, v, n), v, n)
        inner = f.fma(v3, f.cf(0.044715, n), v, n)
        inner = f.bin("mulf", inner, f.cf(math.sqrt(2.0 / math.pi), n), n)
        t = _tanh(f, inner, n)
        return f.bin("mulf", f.bin("mulf", v, f.cf(0.5, n), n), f.bin("addf", t, f.cf(1.0, n), n), n)
    if name == "silu":
        e = _exp(f, f.bin("subf", f.cf(0.0, n), v, n), n)
        return f.op(f"arith.divf {v}, {f.bin('addf', e, f.cf(1.0, n), n)} : {vt(n)}")
    if name == "sigmoid":
        return _sigmoid(f, v, n)
    if name == "tanh":
        return _tanh(f, v, n)
    if name == "hardswish":
        t = f.bin("addf", v, f.cf(3.0, n), n)
        t = f.op(f"arith.maximumf {t}, {f.cf(0.0, n)} : {vt(n)}")
        t = f.op(f"arith.minimumf {t}, {f.cf(6.0, n)} : {vt(n)}")
        return f.bin("divf", f.bin("mulf", v, t, n), f.cf(6.0, n), n)
    raise Unsupported(f"block kernel: activation {name!r} is not supported (supported: {', '.join(ACTS)})")


def check_act(name: str, args) -> None:
    if name not in ACTS:
        raise Unsupported(f"block kernel: activation {name!r} is not supported (supported: {', '.join(ACTS)})")
    if name == "hardtanh" and len(args) != 2:
        raise Unsupported(f"block kernel: hardtanh takes act_args [min, max], got {list(args)}")


# -- the register-tiled micro-kernel ------------------------------------------------------------------
def pixel_tiles(P: int, nv: int) -> list[tuple[int, int, int, int]]:
    """[(first pixel, count of tiles, vectors per tile, lanes per vector)] covering 0..P."""
    out, p = [], 0
    full = P // (nv * V)
    if full:
        out.append((0, full, nv, V))
        p = full * nv * V
    while P - p >= V:
        out.append((p, 1, 1, V))
        p += V
    if P - p:
        out.append((p, 1, 1, P - p))
    return out


def gemm(f: Fn, M: int, K: int, MR: int, nv: int, P: int, a_index, b_index, init, epilogue,
         unroll: int = 2) -> None:
    """out[m, p] = init(m, p) + sum_k A[m, k] B[k, p] for m < M, p < P.

    a_index(t, k, r) -> (buffer, index) of A[t*MR + r, k] (t, k SSA or int);
    b_index(k, p) -> (buffer, index) of B[k, p] (p the first of a vector);
    init(m0, r, p, n) -> vector or None (zero); epilogue(m0, r, p, n, acc) stores row m0 + r."""
    def tile(t, m0, mr, p0, cnt_nv, n):
        accs0 = []
        for r in range(mr):
            for j in range(cnt_nv):
                v = init(m0, r, f.add(p0, j * n), n)
                accs0.append(v if v is not None else f.cf(0.0, n))
        types = [vt(n)] * len(accs0)
        u = unroll if K % unroll == 0 else 1
        k, names, res = f.for_(0, K, u, [(a, ty) for a, ty in zip(accs0, types)])
        accs = list(names)
        for du in range(u):
            kk = f.add(k, du)
            bs = []
            for j in range(cnt_nv):
                buf, i = b_index(kk, f.add(p0, j * n))
                bs.append(f.vload(buf, i, n))
            for r in range(mr):
                buf, i = a_index(t, kk, r)
                a = f.bcast(f.sload(buf, i), n)
                for j in range(cnt_nv):
                    accs[r * cnt_nv + j] = f.fma(a, bs[j], accs[r * cnt_nv + j], n)
        f.end_for(accs, types)
        # the epilogues of the tile's accumulators are independent: their lines are interleaved
        # so that long activation chains (exp, erfc) overlap instead of running one after another
        parts = []
        for r in range(mr):
            for j in range(cnt_nv):
                start = len(f.body)
                epilogue(m0, r, f.add(p0, j * n), n, f"{res}#{r * cnt_nv + j}")
                parts.append(f.body[start:])
                del f.body[start:]
        for i in range(max(len(q) for q in parts)):
            f.body.extend(q[i] for q in parts if i < len(q))

    full, rem = divmod(M, MR)

    def row_tiles(p0, cnt_nv, n):
        if full > 1:
            t, _, _ = f.for_(0, full)
            tile(t, f.mul(t, MR), MR, p0, cnt_nv, n)
            f.end_for()
        elif full == 1:
            tile(0, 0, MR, p0, cnt_nv, n)
        if rem:
            tile(full, full * MR, rem, p0, cnt_nv, n)

    if PIXELS_OUTER:
        # pixel tiles outer: the K x NR panel of B stays in L1 while every row tile reads it
        for p_first, count, cnt_nv, n in pixel_tiles(P, nv):
            if count > 1:
                it, _, _ = f.for_(0, count)
                row_tiles(f.add(f.mul(it, cnt_nv * n), p_first), cnt_nv, n)
                f.end_for()
            else:
                row_tiles(p_first, cnt_nv, n)
        return

    def rows(t, m0, mr):
        for p_first, count, cnt_nv, n in pixel_tiles(P, nv):
            if count > 1:
                it, _, _ = f.for_(0, count)
                p0 = f.add(f.mul(it, cnt_nv * n), p_first)
                tile(t, m0, mr, p0, cnt_nv, n)
                f.end_for()
            else:
                tile(t, m0, mr, p_first, cnt_nv, n)

    if full > 1:
        t, _, _ = f.for_(0, full)
        rows(t, f.mul(t, MR), MR)
        f.end_for()
    elif full == 1:
        rows(0, 0, MR)
    if rem:
        rows(full, full * MR, rem)


# -- grouped / depthwise convolution on a flat band ------------------------------------------------
def conv(f: Fn, *, cout: int, cin_g: int, cout_g: int, k: int, W: int, P: int, src: str, src_off,
         src_ld: int, w: str, bias: str | None, dst: str, dst_off, dst_ld: int, act_name: str, act_args,
         co_block: int, stacked_rows: int | None = None) -> None:
    """dst[co, q] = act(bias[co] + sum_{ci, ky, kx} w[co, ci, ky, kx] src[g*cin_g + ci, q + ky*W + kx - h])
    for q < P (flat pixels of R rows of width W; src holds R + 2h rows, row 0 = the top halo row;
    the column borders masked). stacked_rows=H: src holds whole images of H rows one after the
    other, no halo rows (src[.., q + (ky - h)*W + kx - h]), the row borders masked as well."""
    h = k // 2
    top = 0 if stacked_rows else h            # rows of src above output row 0
    for p_first, count, _, n in pixel_tiles(P, 1):
        if count > 1:
            it, _, _ = f.for_(0, count, 1)
            q0 = f.add(f.mul(it, n), p_first)
        else:
            q0 = p_first
        # masks of the offsets (dy, dx): lanes whose row / column + offset is inside the image
        masks = {}
        if h:
            qi = f.op(f"arith.index_cast {f.idx(q0)} : index to i32")
            qv = f.op(f"vector.broadcast {qi} : i32 to vector<{n}xi32>")
            q = f.op(f"arith.addi {qv}, {f.iota(n)} : vector<{n}xi32>")
            col = f.op(f"arith.remui {q}, {f.cvi(W, n)} : vector<{n}xi32>")
            colm, rowm = {0: None}, {0: None}
            for dx in range(-h, h + 1):
                if dx and abs(dx) < W:
                    colm[dx] = f.op(f"arith.cmpi {'sge' if dx < 0 else 'slt'}, {col}, "
                                    f"{f.cvi(-dx if dx < 0 else W - dx, n)} : vector<{n}xi32>")
            if stacked_rows:
                Hs = stacked_rows
                row = f.op(f"arith.divui {q}, {f.cvi(W, n)} : vector<{n}xi32>")
                row = f.op(f"arith.remui {row}, {f.cvi(Hs, n)} : vector<{n}xi32>")
                for dy in range(-h, h + 1):
                    if dy and abs(dy) < Hs:
                        rowm[dy] = f.op(f"arith.cmpi {'sge' if dy < 0 else 'slt'}, {row}, "
                                        f"{f.cvi(-dy if dy < 0 else Hs - dy, n)} : vector<{n}xi32>")
            for dy in (rowm if stacked_rows else {0: None}):
                for dx in colm:
                    a, b = rowm.get(dy) if stacked_rows else None, colm[dx]
                    if a is None and b is None:
                        continue
                    masks[(dy, dx)] = a if b is None else (b if a is None else
                                                           f.op(f"arith.andi {a}, {b} : vector<{n}xi1>"))
        cb = co_block
        co, _, _ = f.for_(0, cout, cb)
        g = f.op(f"arith.divui {co}, {f.ci(cout_g)} : index") if cout_g > 1 else co
        accs0 = []
        for j in range(cb):
            accs0.append(f.bcast(f.sload(bias, f.add(co, j)), n) if bias else f.cf(0.0, n))
        types = [vt(n)] * cb

        def taps(ci, accs):
            chan = f.add(f.mul(g, cin_g), ci) if cin_g > 1 else f.mul(g, cin_g)
            base = f.add(f.add(f.mul(chan, src_ld), src_off), q0)
            for ky in range(k):
                dy = ky - h
                if stacked_rows and dy and abs(dy) >= stacked_rows:
                    continue
                for kx in range(k):
                    dx = kx - h
                    if dx and abs(dx) >= W:
                        continue
                    i = f.add(base, (ky - h + top) * W + dx)
                    m = masks.get((dy if stacked_rows else 0, dx))
                    v = f.mload(src, i, m, n) if m is not None else f.vload(src, i, n)
                    for j in range(cb):
                        wi = f.add(f.mul(f.add(co, j), cin_g * k * k), f.add(f.mul(ci, k * k), ky * k + kx))
                        wv = f.bcast(f.sload(w, wi), n)
                        accs[j] = f.fma(wv, v, accs[j], n)
            return accs

        if cin_g > 1:
            ci, names, res = f.for_(0, cin_g, 1, [(a, t) for a, t in zip(accs0, types)])
            accs = taps(ci, list(names))
            f.end_for(accs, types)
            accs = [f"{res}#{j}" for j in range(cb)]
        else:
            accs = taps(0, accs0)
        for j in range(cb):
            o = act(f, accs[j], n, act_name, act_args)
            f.vstore(o, dst, f.add(f.add(f.mul(f.add(co, j), dst_ld), dst_off), q0), n)
        f.end_for()
        if count > 1:
            f.end_for()


def round_up(a: int, b: int) -> int:
    return -(-a // b) * b


def module(fn: Fn, args: list[tuple[str, int]], locals_: list[tuple[str, int]]) -> str:
    sig = ", ".join(f"{name}: memref<{size}xf32>" for name, size in args)
    lines = ["module {", f"  func.func @block_chunk({sig}, %c: index) {{"]
    lines += fn.pro
    for name, size in locals_:
        lines.append(f"    {name} = memref.alloca() {{alignment = 64 : i64}} : memref<{size}xf32>")
    lines += fn.body
    lines += ["    return", "  }", "}"]
    return "\n".join(lines)


def entry_text(nargs: int, chunks: int, threads: bool) -> str:
    """LLVM-dialect entry points over the lowered @block_chunk: `_mlir_block_entry(void **data)`
    (data[i] = the i-th buffer's data pointer) running every chunk, on torch's libgomp team when
    `threads` (at most omp_get_max_threads() threads, chunks dealt round-robin)."""
    L = []
    L.append("  llvm.func @block_one(%packed: !llvm.ptr, %c: i64) {")
    L.append("    %z = llvm.mlir.constant(0 : i64) : i64")
    L.append("    %o = llvm.mlir.constant(1 : i64) : i64")
    ops = []
    for i in range(nargs):
        L.append(f"    %s{i} = llvm.getelementptr %packed[{i}] : (!llvm.ptr) -> !llvm.ptr, !llvm.ptr")
        L.append(f"    %p{i} = llvm.load %s{i} : !llvm.ptr -> !llvm.ptr")
        ops += [f"%p{i}", f"%p{i}", "%z", "%z", "%o"]
    types = ", ".join(["!llvm.ptr", "!llvm.ptr", "i64", "i64", "i64"] * nargs + ["i64"])
    L.append(f"    llvm.call @block_chunk({', '.join(ops)}, %c) : ({types}) -> ()")
    L += ["    llvm.return", "  }"]
    L += [
        "  llvm.func @block_serial(%packed: !llvm.ptr) {",
        "    %first = llvm.mlir.constant(0 : i64) : i64",
        "    llvm.br ^loop(%first : i64)",
        "  ^loop(%c: i64):",
        f"    %n = llvm.mlir.constant({chunks} : i64) : i64",
        "    %more = llvm.icmp \"slt\" %c, %n : i64",
        "    llvm.cond_br %more, ^body, ^done",
        "  ^body:",
        "    llvm.call @block_one(%packed, %c) : (!llvm.ptr, i64) -> ()",
        "    %one = llvm.mlir.constant(1 : i64) : i64",
        "    %next = llvm.add %c, %one : i64",
        "    llvm.br ^loop(%next : i64)",
        "  ^done:",
        "    llvm.return",
        "  }",
    ]
    if not threads:
        L += ["  llvm.func @_mlir_block_entry(%packed: !llvm.ptr) {",
              "    llvm.call @block_serial(%packed) : (!llvm.ptr) -> ()",
              "    llvm.return",
              "  }"]
        return "\n".join(L) + "\n"
    L += [
        "  llvm.func @GOMP_parallel(!llvm.ptr, !llvm.ptr, i32, i32)",
        "  llvm.func @omp_get_thread_num() -> i32",
        "  llvm.func @omp_get_num_threads() -> i32",
        "  llvm.func @omp_get_max_threads() -> i32",
        "  llvm.func @block_team(%packed: !llvm.ptr) {",
        "    %t = llvm.call @omp_get_thread_num() : () -> i32",
        "    %nt = llvm.call @omp_get_num_threads() : () -> i32",
        "    %first = llvm.sext %t : i32 to i64",
        "    %step = llvm.sext %nt : i32 to i64",
        "    llvm.br ^loop(%first : i64)",
        "  ^loop(%c: i64):",
        f"    %n = llvm.mlir.constant({chunks} : i64) : i64",
        "    %more = llvm.icmp \"slt\" %c, %n : i64",
        "    llvm.cond_br %more, ^body, ^done",
        "  ^body:",
        "    llvm.call @block_one(%packed, %c) : (!llvm.ptr, i64) -> ()",
        "    %next = llvm.add %c, %step : i64",
        "    llvm.br ^loop(%next : i64)",
        "  ^done:",
        "    llvm.return",
        "  }",
        "  llvm.func @_mlir_block_entry(%packed: !llvm.ptr) {",
        "    %max = llvm.call @omp_get_max_threads() : () -> i32",
        f"    %chunks = llvm.mlir.constant({chunks} : i32) : i32",
        "    %fewer = llvm.icmp \"slt\" %max, %chunks : i32",
        "    %n = llvm.select %fewer, %max, %chunks : i1, i32",
        "    %two = llvm.mlir.constant(2 : i32) : i32",
        "    %par = llvm.icmp \"sge\" %n, %two : i32",
        "    llvm.cond_br %par, ^parallel, ^serial",
        "  ^parallel:",
        "    %fn = llvm.mlir.addressof @block_team : !llvm.ptr",
        "    %flags = llvm.mlir.constant(0 : i32) : i32",
        "    llvm.call @GOMP_parallel(%fn, %packed, %n, %flags) : (!llvm.ptr, !llvm.ptr, i32, i32) -> ()",
        "    llvm.return",
        "  ^serial:",
        "    llvm.call @block_serial(%packed) : (!llvm.ptr) -> ()",
        "    llvm.return",
        "  }",
    ]
    return "\n".join(L) + "\n"


def zero_range(f: Fn, buf: str, off, length: int) -> None:
    for p_first, count, _, n in pixel_tiles(length, 1):
        if count > 1:
            it, _, _ = f.for_(0, count * n, n)
            f.vstore(f.cf(0.0, n), buf, f.add(f.add(off, p_first), it), n)
            f.end_for()
        else:
            f.vstore(f.cf(0.0, n), buf, f.add(off, p_first), n)


def copy_range(f: Fn, src: str, si, dst: str, di, length: int) -> None:
    for p_first, count, _, n in pixel_tiles(length, 1):
        if count > 1:
            it, _, _ = f.for_(0, count * n, n)
            f.vstore(f.vload(src, f.add(f.add(si, p_first), it), n), dst, f.add(f.add(di, p_first), it), n)
            f.end_for()
        else:
            f.vstore(f.vload(src, f.add(si, p_first), n), dst, f.add(di, p_first), n)
