"""MLIR text of the native CPU block kernels (func / scf / vector / memref / arith / math), for
block_cpu.py.

Each module holds one function

    func @block_chunk(%a0: memref<N0xf32>, ..., %c: index)

computing chunk `c` of a whole residual block (every buffer flat, fp32, static sizes; the
argument order is the one block_cpu.py packs), plus, once lowered to the LLVM dialect, the
entry points of `entry_text` (all chunks on torch's libgomp threads, or serially in order; both
run the same chunk code, so the values do not depend on the thread count).

Building blocks (block_cpu_emit.py):
  * `gemm`: a register-tiled micro-kernel, out[m, p] = sum_k A[m, k] * B[k, p]: MR rows x NR
    pixels of vector accumulators, the k loop broadcasting MR scalars of A (a weight packed at
    compile time as [M/MR, K, MR], or rows of a local buffer) and loading NR pixels of B; the
    epilogue (bias, activation, residual) runs on the accumulators before the store.
  * `conv`: a grouped / depthwise k x k convolution (stride 1, padding k // 2) on a band of rows
    kept flat ([channels, rows * W]), vectorised along the flat pixel index, so that narrow images
    (W = 2, 4) still fill vectors; the column borders are masked loads (masks computed once per
    pixel tile), the row borders are zero rows of the band buffer.
  * `inverted_plan` (inverted_block): a strided depthwise conv on a zero-padded hidden band,
    vectorised along the band's flat output pixels with gathered taps (any stride / padding).
  * activations in registers (exp and erfc are polynomial / rational approximations written here:
    relative error about 1e-7).
"""
from __future__ import annotations

from .block_cpu_emit import (SLACK, V, Fn, act, check_act, conv, copy_range, gemm, module, pixel_tiles, round_up, vt,
                             zero_range)

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
