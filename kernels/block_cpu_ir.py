"""MLIR text of the native CPU block kernels (func / scf / vector / memref / arith / math), for
block_cpu.py.

Each module holds one function

    func @block_chunk(%a0: memref<N0xf32>, ..., %c: index)

computing chunk `c` of a whole residual block (every buffer flat, fp32, static sizes; the
argument order is the one block_cpu.py packs), plus, once lowered to the LLVM dialect, the
entry points of `entry_text` (all chunks on torch's libgomp threads, or serially in order; both
run the same chunk code, so the values do not depend on the thread count).

Building blocks:
  * `_gemm`: a register-tiled micro-kernel, out[m, p] = sum_k A[m, k] * B[k, p]: MR rows x NR
    pixels of vector accumulators, the k loop broadcasting MR scalars of A (a weight packed at
    compile time as [M/MR, K, MR], or rows of a local buffer) and loading NR pixels of B; the
    epilogue (bias, activation, residual) runs on the accumulators before the store.
  * `_conv`: a grouped / depthwise k x k convolution (stride 1, padding k // 2) on a band of rows
    kept flat ([channels, rows * W]), vectorised along the flat pixel index, so that narrow images
    (W = 2, 4) still fill vectors; the column borders are masked loads (masks computed once per
    pixel tile), the row borders are zero rows of the band buffer.
  * `inverted_plan` (inverted_block): a strided depthwise conv on a zero-padded hidden band,
    vectorised along the band's flat output pixels with gathered taps (any stride / padding).
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


BAND_PIXELS, BAND_BYTES = 256, 300 * 1024


def choose_rows(H: int, W: int, h: int, hidden: int) -> int:
    """Rows per band: a divisor of H, at least the halo h (or H), the band's hidden buffer small."""
    ok = [r for r in range(1, H + 1) if H % r == 0 and (r >= h or r == H)]
    fit = [r for r in ok if r * W <= BAND_PIXELS and hidden * (r + 2 * h) * W * 4 <= BAND_BYTES]
    if fit:
        return max(fit)
    return min(ok)


class Plan:
    """What one specialisation computes: the module text, argument sizes, chunk count."""

    def __init__(self, text: str, arg_sizes: list[int], chunks: int):
        self.text, self.arg_sizes, self.chunks = text, arg_sizes, chunks


def _stage_band(f: Fn, x: str, xoff, C: int, HW: int, W: int, R: int, h: int, bands: int, b, dst: str,
                dst_off: int, ld: int) -> None:
    """dst[c, rr*W + j] (rr < R + 2h) = x rows y0 - h + rr of channel c, zero outside the image."""
    ch, _, _ = f.for_(0, C)
    cs = f.add(f.mul(ch, HW), xoff)           # row y0 of channel ch in x
    cd = f.add(f.mul(ch, ld), dst_off)
    copy_range(f, x, cs, dst, f.add(cd, h * W), R * W)
    if h:
        if bands == 1:
            zero_range(f, dst, cd, h * W)
            zero_range(f, dst, f.add(cd, (h + R) * W), h * W)
        else:
            for top in (True, False):
                cond = f.op(f"arith.cmpi eq, {b}, {f.ci(0 if top else bands - 1)} : index")
                at = cd if top else f.add(cd, (h + R) * W)
                src = f.add(cs, -h * W) if top else f.add(cs, R * W)
                f.emit(f"scf.if {cond} {{")
                f.ind += 1
                zero_range(f, dst, at, h * W)
                f.ind -= 1
                f.emit("} else {")
                f.ind += 1
                copy_range(f, x, src, dst, at, h * W)
                f.ind -= 1
                f.emit("}")
    f.end_for()


def _chunk_position(f: Fn, bands: int, R: int, W: int, C: int, HW: int):
    if bands > 1:
        n = f.op(f"arith.divui %c, {f.ci(bands)} : index")
        b = f.op(f"arith.remui %c, {f.ci(bands)} : index")
    else:
        n, b = "%c", 0
    xoff = f.add(f.mul(n, C * HW), f.mul(b, R * W))
    return n, b, xoff


MR, NV = 6, 2
NORM_NV = 4            # vectors of pixels per channel-norm tile (independent add chains)


def channel_norm(f: Fn, buf: str, off, ld: int, C: int, P: int, eps: float) -> None:
    """buf[off + c*ld + p] (c < C, p < P) := (s - mean_p) / sqrt(var_p + eps), mean and biased
    variance over the C channels of pixel p (layer norm over C, no affine), in place.

    Vectorised along pixels, a tile of NORM_NV vectors at a time so that its C x tile column
    stays in L1 over the three passes: the sum (mean), the sum of squared deviations from the mean
    (two passes, so no cancellation when |mean| >> std), then the scaling. Each pixel's
    result depends only on its own column, so it is the same whatever the tiling and threads."""
    inv_c = 1.0 / C
    for p_first, count, cnt_nv, n in pixel_tiles(P, NORM_NV):
        if count > 1:
            it, _, _ = f.for_(0, count)
            p0 = f.add(f.mul(it, cnt_nv * n), p_first)
        else:
            p0 = p_first
        types = [vt(n)] * cnt_nv

        def column(fn, init):
            """sum over c of fn(j, vector j of row c) for the tile's vectors j (accumulators)."""
            c, names, res = f.for_(0, C, 1, [(v, vt(n)) for v in init])
            row = f.add(f.mul(c, ld), f.add(off, p0))
            accs = [fn(j, f.vload(buf, f.add(row, j * n), n), names[j]) for j in range(cnt_nv)]
            f.end_for(accs, types)
            return [f"{res}#{j}" for j in range(cnt_nv)]

        zero = [f.cf(0.0, n)] * cnt_nv
        sums = column(lambda j, v, a: f.bin("addf", a, v, n), zero)
        means = [f.bin("mulf", s_, f.cf(inv_c, n), n) for s_ in sums]

        def sq(j, v, a):
            d = f.bin("subf", v, means[j], n)
            return f.fma(d, d, a, n)
        ssq = column(sq, zero)
        rstds = []
        for a in ssq:
            var = f.bin("addf", f.bin("mulf", a, f.cf(inv_c, n), n), f.cf(eps, n), n)
            sd = f.op(f"math.sqrt {var} : {vt(n)}")
            rstds.append(f.op(f"arith.divf {f.cf(1.0, n)}, {sd} : {vt(n)}"))
        c, _, _ = f.for_(0, C)
        row = f.add(f.mul(c, ld), f.add(off, p0))
        for j in range(cnt_nv):
            i = f.add(row, j * n)
            v = f.bin("subf", f.vload(buf, i, n), means[j], n)
            f.vstore(f.bin("mulf", v, rstds[j], n), buf, i, n)
        f.end_for()
        if count > 1:
            f.end_for()


def convfirst_plan(N, C, H, W, k, groups, hidden, act_name, act_args, eps: float | None = None) -> Plan:
    """convfirst_block; with eps, convnext_block (each pixel's channels of the conv's output
    normalized in the band buffer before the expansion)."""
    check_act(act_name, act_args)
    h = k // 2
    HW = H * W
    R = choose_rows(H, W, h, hidden)
    bands = H // R
    P = R * W
    rows_in = R + 2 * h
    cin_g = C // groups
    cout_g = C // groups
    co_block = max(b for b in (1, 2, 4) if cout_g % b == 0)
    f = Fn()
    sizes = dict(x=N * C * HW, ws=C * cin_g * k * k, bs=C, we=round_up(hidden, MR) * C, be=round_up(hidden, MR),
                 wp=round_up(C, MR) * hidden, bp=round_up(C, MR), out=N * C * HW)
    locals_ = dict(xs=round_up(C * rows_in * W + 2 * SLACK, V), s=round_up(C * P, V), hid=round_up(hidden * P, V))
    for name, size in list(sizes.items()) + list(locals_.items()):
        f.types["%" + name] = f"memref<{size}xf32>"
    n, b, xoff = _chunk_position(f, bands, R, W, C, HW)
    xs_ld = rows_in * W
    _stage_band(f, "%x", xoff, C, HW, W, R, h, bands, b, "%xs", SLACK, xs_ld)
    conv(f, cout=C, cin_g=cin_g, cout_g=cout_g, k=k, W=W, P=P, src="%xs", src_off=SLACK, src_ld=xs_ld,
         w="%ws", bias="%bs", dst="%s", dst_off=0, dst_ld=P, act_name="none", act_args=(), co_block=co_block)
    if eps is not None:
        channel_norm(f, "%s", 0, P, C, P, eps)
    _expand(f, C, hidden, P, "%s", 0, P, "%hid", 0, P, act_name, act_args)
    _project(f, C, hidden, P, "%hid", P, xoff, HW)
    args = [("%" + a, s) for a, s in sizes.items()]
    return Plan(module(f, args, [("%" + a, s) for a, s in locals_.items()]), list(sizes.values()), N * bands)


def _expand(f: Fn, C, hidden, P, b_src, b_off, b_ld, hid, hid_off, hid_ld, act_name, act_args):
    gemm(f, hidden, C, MR, NV, P,
         a_index=lambda t, kk, r: ("%we", f.add(f.add(f.mul(t, C * MR), f.mul(kk, MR)), r)),
         b_index=lambda kk, p: (b_src, f.add(f.add(f.mul(kk, b_ld), b_off), p)),
         init=lambda m0, r, p, n: f.bcast(f.sload("%be", f.add(m0, r)), n),
         epilogue=lambda m0, r, p, n, acc: f.vstore(act(f, acc, n, act_name, act_args), hid,
                                                     f.add(f.add(f.mul(f.add(m0, r), hid_ld), hid_off), p), n))


def _project(f: Fn, C, hidden, P, src, ld, xoff, HW, res="%x", dst="%out"):
    def epi(m0, r, p, n, acc):
        i = f.add(f.add(f.mul(f.add(m0, r), HW), xoff), p)
        f.vstore(f.bin("addf", acc, f.vload(res, i, n), n), dst, i, n)
    gemm(f, C, hidden, MR, NV, P,
         a_index=lambda t, kk, r: ("%wp", f.add(f.add(f.mul(t, hidden * MR), f.mul(kk, MR)), r)),
         b_index=lambda kk, p: (src, f.add(f.mul(kk, ld), p)),
         init=lambda m0, r, p, n: f.bcast(f.sload("%bp", f.add(m0, r)), n),
         epilogue=epi)


def images_per_chunk(N: int, HW: int, hidden: int, target: int = 64) -> int:
    """Whole small images per chunk: a divisor of N, enough pixels to fill vectors."""
    fit = [b for b in range(1, N + 1) if N % b == 0 and b * HW <= max(target, HW) and (b == 1 or 2 * b <= N)
           and (b == 1 or hidden * b * HW * 4 <= 160 * 1024)]
    return max(fit)


def mbconv_plan(N, C, H, W, hidden, k, act1, act1_args, act2, act2_args) -> Plan:
    check_act(act1, act1_args)
    check_act(act2, act2_args)
    h = k // 2
    HW = H * W
    R = choose_rows(H, W, h, hidden)
    bands = H // R
    f = Fn()
    sizes = dict(x=N * C * HW, we=round_up(hidden, MR) * C, be=round_up(hidden, MR), wd=hidden * k * k,
                 bd=hidden, wp=round_up(C, MR) * hidden, bp=round_up(C, MR), out=N * C * HW)
    if bands == 1:
        # whole images, B per chunk, stacked: no halo rows, the depthwise borders masked
        B = images_per_chunk(N, HW, hidden)
        P = B * HW
        locals_ = dict(hid=round_up(hidden * P + 2 * SLACK, V), hid2=round_up(hidden * P, V))
        if B > 1:
            locals_.update(xs=round_up(C * P, V), ob=round_up(C * P, V))
        for name, size in list(sizes.items()) + list(locals_.items()):
            f.types["%" + name] = f"memref<{size}xf32>"
        xoff = f.mul("%c", B * C * HW)
        if B > 1:
            ch, _, _ = f.for_(0, C)
            for i in range(B):
                copy_range(f, "%x", f.add(f.mul(ch, HW), f.add(xoff, i * C * HW)), "%xs", f.add(f.mul(ch, P), i * HW), HW)
            f.end_for()
            _expand(f, C, hidden, P, "%xs", 0, P, "%hid", SLACK, P, act1, act1_args)
        else:
            _expand(f, C, hidden, P, "%x", xoff, HW, "%hid", SLACK, P, act1, act1_args)
        conv(f, cout=hidden, cin_g=1, cout_g=1, k=k, W=W, P=P, src="%hid", src_off=SLACK, src_ld=P,
             w="%wd", bias="%bd", dst="%hid2", dst_off=0, dst_ld=P, act_name=act2, act_args=act2_args,
             co_block=1, stacked_rows=H)
        if B > 1:
            _project(f, C, hidden, P, "%hid2", P, 0, P, res="%xs", dst="%ob")
            ch, _, _ = f.for_(0, C)
            for i in range(B):
                copy_range(f, "%ob", f.add(f.mul(ch, P), i * HW), "%out", f.add(f.mul(ch, HW), f.add(xoff, i * C * HW)), HW)
            f.end_for()
        else:
            _project(f, C, hidden, P, "%hid2", P, xoff, HW)
        args = [("%" + a, s) for a, s in sizes.items()]
        return Plan(module(f, args, [("%" + a, s) for a, s in locals_.items()]), list(sizes.values()), N // B)
    P = R * W
    rows_in = R + 2 * h
    hid_ld = rows_in * W
    locals_ = dict(hid=round_up(hidden * hid_ld + 2 * SLACK, V), hid2=round_up(hidden * P, V),
                   xs=round_up(C * hid_ld, V))
    for name, size in list(sizes.items()) + list(locals_.items()):
        f.types["%" + name] = f"memref<{size}xf32>"
    n, b, xoff = _chunk_position(f, bands, R, W, C, HW)
    _stage_band(f, "%x", xoff, C, HW, W, R, h, bands, b, "%xs", 0, hid_ld)
    _expand(f, C, hidden, rows_in * W, "%xs", 0, hid_ld, "%hid", SLACK, hid_ld, act1, act1_args)
    for top in (True, False):
        cond = f.op(f"arith.cmpi eq, {b}, {f.ci(0 if top else bands - 1)} : index")
        f.emit(f"scf.if {cond} {{")
        f.ind += 1
        ch, _, _ = f.for_(0, hidden)
        base = f.add(f.mul(ch, hid_ld), SLACK if top else SLACK + (h + R) * W)
        zero_range(f, "%hid", base, h * W)
        f.end_for()
        f.ind -= 1
        f.emit("}")
    conv(f, cout=hidden, cin_g=1, cout_g=1, k=k, W=W, P=P, src="%hid", src_off=SLACK, src_ld=hid_ld,
         w="%wd", bias="%bd", dst="%hid2", dst_off=0, dst_ld=P, act_name=act2, act_args=act2_args, co_block=1)
    _project(f, C, hidden, P, "%hid2", P, xoff, HW)
    args = [("%" + a, s) for a, s in sizes.items()]
    return Plan(module(f, args, [("%" + a, s) for a, s in locals_.items()]), list(sizes.values()), N * bands)


# -- mlp_block -------------------------------------------------------------------------------------
def _row_sum(f: Fn, buf: str, off, D: int, fn) -> str:
    """sum over j < D of fn(vector of buf[off + j ...]) as an f32 scalar."""
    total = None
    for p_first, count, _, n in pixel_tiles(D, 1):
        if count > 1:
            it, names, res = f.for_(0, count * n, n, [(f.cf(0.0, n), vt(n))])
            v = fn(f.vload(buf, f.add(f.add(off, p_first), it), n), n)
            f.end_for([f.bin("addf", names[0], v, n)], [vt(n)])
            acc = f"{res}#0"
        else:
            acc = fn(f.vload(buf, f.add(off, p_first), n), n)
        s = f.op(f"vector.reduction <add>, {acc} : {vt(n)} into f32")
        total = s if total is None else f.op(f"arith.addf {total}, {s} : f32")
    return total


def _row_map(f: Fn, src: str, so, dst: str, do, D: int, fn) -> None:
    """dst[do + j] = fn(src[so + j], j) vectorised over j < D."""
    for p_first, count, _, n in pixel_tiles(D, 1):
        if count > 1:
            it, _, _ = f.for_(0, count * n, n)
            j = f.add(p_first, it)
        else:
            j = p_first
        f.vstore(fn(f.vload(src, f.add(so, j), n), j, n), dst, f.add(do, j), n)
        if count > 1:
            f.end_for()


MLP_MR, MLP_NV, MLP_TM, MLP_HC = 8, 2, 16, 128


def mlp_plan(M, D, H, norm, eps, has_norm_w, has_norm_b, gate, act_name, act_args) -> Plan:
    check_act(act_name, act_args)
    TM, HC, mr = MLP_TM, min(MLP_HC, H), MLP_MR
    chunks = -(-M // TM)
    f = Fn()
    sizes = dict(x=M * D, nw=D, nb=D, w1=D * H, b1=H)
    if gate:
        sizes.update(w3=D * H, b3=H)
    sizes.update(w2=H * D, b2=D, out=M * D)
    locals_ = dict(n=TM * D, h=TM * HC, acc=TM * D)
    if gate:
        locals_["g"] = TM * HC
    for name, size in list(sizes.items()) + list(locals_.items()):
        f.types["%" + name] = f"memref<{size}xf32>"
    row0 = f.mul("%c", TM)
    left = f.op(f"arith.subi {f.ci(M)}, {row0} : index")
    rows = f.op(f"arith.minui {left}, {f.ci(TM)} : index")
    # 1. the norm of the tile's rows into %n (rows past the end: zero)
    r, _, _ = f.for_(0, rows)
    xo = f.mul(f.add(row0, r), D)
    no = f.mul(r, D)
    if norm == "none":
        _row_map(f, "%x", xo, "%n", no, D, lambda v, j, n: v)
    else:
        inv_d = f.cf(1.0 / D)
        if norm == "layer":
            s = _row_sum(f, "%x", xo, D, lambda v, n: v)
            mean = f.op(f"arith.mulf {s}, {inv_d} : f32")
            mv = {}

            def centred(v, n):
                if n not in mv:
                    mv[n] = f.bcast(mean, n)
                return f.bin("subf", v, mv[n], n)
            ss = _row_sum(f, "%x", xo, D, lambda v, n: (lambda d: f.bin("mulf", d, d, n))(centred(v, n)))
        else:
            mean = None
            ss = _row_sum(f, "%x", xo, D, lambda v, n: f.bin("mulf", v, v, n))
        var = f.op(f"arith.mulf {ss}, {inv_d} : f32")
        var = f.op(f"arith.addf {var}, {f.cf(eps)} : f32")
        sd = f.op(f"math.sqrt {var} : f32")
        rstd = f.op(f"arith.divf {f.cf(1.0)}, {sd} : f32")
        cache = {}

        def normed(v, j, n):
            if n not in cache:
                cache[n] = (f.bcast(rstd, n), f.bcast(mean, n) if mean is not None else None)
            rs, mn = cache[n]
            if mn is not None:
                v = f.bin("subf", v, mn, n)
            v = f.bin("mulf", v, rs, n)
            if has_norm_w:
                v = f.bin("mulf", v, f.vload("%nw", j, n), n)
            if has_norm_b:
                v = f.bin("addf", v, f.vload("%nb", j, n), n)
            return v
        _row_map(f, "%x", xo, "%n", no, D, normed)
    f.end_for()
    r, _, _ = f.for_(rows, TM)
    zero_range(f, "%n", f.mul(r, D), D)
    f.end_for()
    # 2. acc = b2
    r, _, _ = f.for_(0, TM)
    _row_map(f, "%b2", 0, "%acc", f.mul(r, D), D, lambda v, j, n: v)
    f.end_for()

    # 3. per hidden chunk: h = act(n w1^T + b1) [* (n w3^T + b3)]; acc += h w2^T
    def hidden_chunk(j0, hc):
        gemm(f, TM, D, mr, MLP_NV, hc,
             a_index=lambda t, kk, r_: ("%n", f.add(f.mul(f.add(f.mul(t, mr), r_), D), kk)),
             b_index=lambda kk, p: ("%w1", f.add(f.add(f.mul(kk, H), j0), p)),
             init=lambda m0, r_, p, n: f.vload("%b1", f.add(j0, p), n),
             epilogue=lambda m0, r_, p, n, acc: f.vstore(act(f, acc, n, act_name, act_args), "%h",
                                                          f.add(f.mul(f.add(m0, r_), HC), p), n))
        if gate:
            def gate_epi(m0, r_, p, n, acc):
                i = f.add(f.mul(f.add(m0, r_), HC), p)
                f.vstore(f.bin("mulf", f.vload("%h", i, n), acc, n), "%h", i, n)
            gemm(f, TM, D, mr, MLP_NV, hc,
                 a_index=lambda t, kk, r_: ("%n", f.add(f.mul(f.add(f.mul(t, mr), r_), D), kk)),
                 b_index=lambda kk, p: ("%w3", f.add(f.add(f.mul(kk, H), j0), p)),
                 init=lambda m0, r_, p, n: f.vload("%b3", f.add(j0, p), n),
                 epilogue=gate_epi)
        gemm(f, TM, hc, mr, MLP_NV, D,
             a_index=lambda t, kk, r_: ("%h", f.add(f.mul(f.add(f.mul(t, mr), r_), HC), kk)),
             b_index=lambda kk, p: ("%w2", f.add(f.mul(f.add(j0, kk), D), p)),
             init=lambda m0, r_, p, n: f.vload("%acc", f.add(f.mul(f.add(m0, r_), D), p), n),
             epilogue=lambda m0, r_, p, n, acc: f.vstore(acc, "%acc", f.add(f.mul(f.add(m0, r_), D), p), n))

    full, rem = divmod(H, HC)
    if full > 1:
        jc, _, _ = f.for_(0, full)
        hidden_chunk(f.mul(jc, HC), HC)
        f.end_for()
    else:
        hidden_chunk(0, HC)
    if rem:
        hidden_chunk(full * HC, rem)
    # 4. out = x + acc for the tile's rows
    r, _, _ = f.for_(0, rows)
    xo = f.mul(f.add(row0, r), D)
    ao = f.mul(r, D)
    _row_map(f, "%x", xo, "%out", xo, D, lambda v, j, n: f.bin("addf", v, f.vload("%acc", f.add(ao, j), n), n))
    f.end_for()
    args = [("%" + a, s) for a, s in sizes.items()]
    return Plan(module(f, args, [("%" + a, s) for a, s in locals_.items()]), list(sizes.values()), chunks)


# -- inverted_block: MobileNetV2's inverted block without residual, strided, explicit padding --------
def inverted_geometry(H: int, W: int, k: int, stride: int, pad) -> tuple[int, int]:
    """(Ho, Wo) of the depthwise conv on the zero-padded hidden map (pad = [left, right, top, bottom])."""
    l, r, t, b = pad
    return (H + t + b - k) // stride + 1, (W + l + r - k) // stride + 1


def inverted_rows(Ho: int, Wo: int, stride: int, k: int, W: int, Wp: int, hidden: int, C: int) -> int:
    """Output rows per band: a divisor of Ho, the band's pixels and local buffers small."""
    ok = [r for r in range(1, Ho + 1) if Ho % r == 0]

    def bytes_(r):
        rows_in = (r - 1) * stride + k
        return 4 * (hidden * rows_in * (W + Wp) + C * rows_in * W + hidden * r * Wo)
    fit = [r for r in ok if r * Wo <= BAND_PIXELS and bytes_(r) <= 2 * BAND_BYTES]
    return max(fit) if fit else 1


def _gather(f: Fn, buf: str, base, idx: str, n: int) -> str:
    mask = f._const(("true", n), f"arith.constant dense<true> : vector<{n}xi1>")
    return f.op(f"vector.gather {buf}[{f.idx(base)}] [{idx}], {mask}, {f.cf(0.0, n)} : {f.types[buf]}, "
                f"vector<{n}xi32>, vector<{n}xi1>, {vt(n)} into {vt(n)}")


def inverted_plan(N, C, H, W, hidden, k, stride, pad, Cout, act1, act1_args, act2, act2_args) -> Plan:
    """Per chunk (image n, band of Ro output rows): the input rows the band reads staged (rows
    outside the image zero), the 1x1 expansion + act1 on them, copied into a zero-padded hidden
    band [hidden, rows_in, Wp] (padding after act1), the strided depthwise k x k + act2 into
    [hidden, Ro*Wo] (vectorised along the band's flat output pixels, the taps gathered), then the
    1x1 projection into the output's rows (no residual)."""
    check_act(act1, act1_args)
    check_act(act2, act2_args)
    l, r_, t, _ = pad
    s = stride
    Ho, Wo = inverted_geometry(H, W, k, s, pad)
    HW, HoWo = H * W, Ho * Wo
    Wp = W + l + r_
    Ro = inverted_rows(Ho, Wo, s, k, W, Wp, hidden, C)
    bands = Ho // Ro
    rows_in = (Ro - 1) * s + k
    P = Ro * Wo
    Pin = rows_in * W
    hp_ld = rows_in * Wp
    f = Fn()
    sizes = dict(x=N * C * HW, we=round_up(hidden, MR) * C, be=round_up(hidden, MR), wd=hidden * k * k,
                 bd=hidden, wp=round_up(Cout, MR) * hidden, bp=round_up(Cout, MR), out=N * Cout * HoWo)
    locals_ = dict(xs=round_up(C * Pin, V), hid=round_up(hidden * Pin, V), hp=round_up(hidden * hp_ld, V),
                   hid2=round_up(hidden * P, V))
    for name, size in list(sizes.items()) + list(locals_.items()):
        f.types["%" + name] = f"memref<{size}xf32>"
    if bands > 1:
        n = f.op(f"arith.divui %c, {f.ci(bands)} : index")
        b = f.op(f"arith.remui %c, {f.ci(bands)} : index")
    else:
        n, b = "%c", 0
    xoff = f.mul(n, C * HW)
    ooff = f.add(f.mul(n, Cout * HoWo), f.mul(b, P))
    iy0 = f.add(f.mul(b, Ro * s), -t)          # input row of the band's padded row 0 (may be < 0)

    def if_row_valid(rr, then, other):
        iy = f.add(iy0, rr)
        ge = f.op(f"arith.cmpi sge, {f.idx(iy)}, {f.ci(0)} : index")
        lt = f.op(f"arith.cmpi slt, {f.idx(iy)}, {f.ci(H)} : index")
        ok = f.op(f"arith.andi {ge}, {lt} : i1")
        f.emit(f"scf.if {ok} {{")
        f.ind += 1
        then(iy)
        f.ind -= 1
        f.emit("} else {")
        f.ind += 1
        other()
        f.ind -= 1
        f.emit("}")

    # 1. stage the input rows (zero outside the image)
    ch, _, _ = f.for_(0, C)
    rr, _, _ = f.for_(0, rows_in)
    d = f.add(f.mul(ch, Pin), f.mul(rr, W))
    if_row_valid(rr, lambda iy: copy_range(f, "%x", f.add(f.add(xoff, f.mul(ch, HW)), f.mul(iy, W)), "%xs", d, W),
                 lambda: zero_range(f, "%xs", d, W))
    f.end_for()
    f.end_for()
    # 2. expansion + act1 on every staged row
    _expand(f, C, hidden, Pin, "%xs", 0, Pin, "%hid", 0, Pin, act1, act1_args)
    # 3. the zero-padded hidden band
    ch, _, _ = f.for_(0, hidden)
    rr, _, _ = f.for_(0, rows_in)
    d = f.add(f.mul(ch, hp_ld), f.mul(rr, Wp))

    def valid(iy):
        if l:
            zero_range(f, "%hp", d, l)
        copy_range(f, "%hid", f.add(f.mul(ch, Pin), f.mul(rr, W)), "%hp", f.add(d, l), W)
        if r_:
            zero_range(f, "%hp", f.add(d, l + W), r_)
    if_row_valid(rr, valid, lambda: zero_range(f, "%hp", d, Wp))
    f.end_for()
    f.end_for()
    # 4. strided depthwise + act2 over the band's flat output pixels
    for p_first, count, _, nl in pixel_tiles(P, 1):
        if count > 1:
            it, _, _ = f.for_(0, count, 1)
            q0 = f.add(f.mul(it, nl), p_first)
        else:
            q0 = p_first
        qi = f.op(f"arith.index_cast {f.idx(q0)} : index to i32")
        qv = f.op(f"vector.broadcast {qi} : i32 to vector<{nl}xi32>")
        q = f.op(f"arith.addi {qv}, {f.iota(nl)} : vector<{nl}xi32>")
        oy = f.op(f"arith.divui {q}, {f.cvi(Wo, nl)} : vector<{nl}xi32>")
        ox = f.op(f"arith.remui {q}, {f.cvi(Wo, nl)} : vector<{nl}xi32>")
        iy = f.op(f"arith.muli {oy}, {f.cvi(s * Wp, nl)} : vector<{nl}xi32>")
        ix = f.op(f"arith.muli {ox}, {f.cvi(s, nl)} : vector<{nl}xi32>")
        idx = f.op(f"arith.addi {iy}, {ix} : vector<{nl}xi32>")
        ch, _, _ = f.for_(0, hidden)
        acc = f.bcast(f.sload("%bd", ch), nl)
        base = f.mul(ch, hp_ld)
        for ky in range(k):
            for kx in range(k):
                v = _gather(f, "%hp", f.add(base, ky * Wp + kx), idx, nl)
                wv = f.bcast(f.sload("%wd", f.add(f.mul(ch, k * k), ky * k + kx)), nl)
                acc = f.fma(wv, v, acc, nl)
        f.vstore(act(f, acc, nl, act2, act2_args), "%hid2", f.add(f.mul(ch, P), q0), nl)
        f.end_for()
        if count > 1:
            f.end_for()
    # 5. projection into the output rows
    gemm(f, Cout, hidden, MR, NV, P,
         a_index=lambda tt, kk, r: ("%wp", f.add(f.add(f.mul(tt, hidden * MR), f.mul(kk, MR)), r)),
         b_index=lambda kk, p: ("%hid2", f.add(f.mul(kk, P), p)),
         init=lambda m0, r, p, nn: f.bcast(f.sload("%bp", f.add(m0, r)), nn),
         epilogue=lambda m0, r, p, nn, a: f.vstore(a, "%out", f.add(f.add(f.mul(f.add(m0, r), HoWo), ooff), p), nn))
    args = [("%" + a, sz) for a, sz in sizes.items()]
    return Plan(module(f, args, [("%" + a, sz) for a, sz in locals_.items()]), list(sizes.values()), N * bands)
