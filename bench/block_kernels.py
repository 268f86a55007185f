"""Block-level benchmark of the native CPU block kernels (kernels/block_cpu.py).

Per block problem: (a) per-layer ATen (kernels/blocks.py's reference functions), (b) per-layer
oneDNN as fastc runs products today (PackedConv / PackedLinear with bias + activation fused, the
residual fused into the last product, the middle 1x1 convs chained with any_layout=True), (c) the
block kernel. One process, interleaved rounds, medians; writes docs/benchmarks/block-kernels-cpu.md
and .json.

    .venv/bin/python bench/block_kernels.py [--threads 2] [--rounds 30] [--only conv|mlp]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import torch

from fastc.kernels.block_cpu import compile_block
from fastc.kernels.blocks import (bind_onednn_layers, convfirst_block_reference, convnext_block_reference,
                                  mbconv_block_reference, mlp_block_reference)
from fastc.kernels.onednn import PackedConv, PackedLinear

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cpu_name() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def convfirst(N, C, H, W, k, g, e, act="gelu", act_args=()):
    x = torch.randn(N, C, H, W)
    hid = C * e
    ws, bs = torch.randn(C, C // g, k, k) * 0.2, torch.randn(C) * 0.1
    we, be = torch.randn(hid, C, 1, 1) * 0.1, torch.randn(hid) * 0.1
    wp, bp = torch.randn(C, hid, 1, 1) * 0.1, torch.randn(C) * 0.1
    params = (ws, bs, g, we, be, act, list(act_args), wp, bp)
    p = k // 2
    cs = PackedConv(ws, [1, 1], [p, p], [1, 1], g, x.shape)
    ce = PackedConv(we, [1, 1], [0, 0], [1, 1], 1, (N, C, H, W))
    cp = PackedConv(wp, [1, 1], [0, 0], [1, 1], 1, (N, hid, H, W))

    def onednn(x):
        s = cs(x, bs, None, "none", [], True)
        h = ce(s, be, None, act, list(act_args), True)
        return cp(h, bp, x, "none", [], False)
    return (f"ConvFirst C={C} g={g} k={k} x{e} {H}x{W} N={N}", x,
            lambda x: convfirst_block_reference(x, *params), onednn, compile_block("convfirst_block", x.shape, params))


def convnext(N, C, H, W, k=7, e=4, act="gelu", eps=1e-6):
    """ConvNeXt's block (depthwise k x k, channel norm, expansion, projection); oneDNN: the layers
    one by one as fastc runs them without the block op (blocks.bind_onednn_layers)."""
    x = torch.randn(N, C, H, W)
    hid = C * e
    ws, bs = torch.randn(C, 1, k, k) * 0.2, torch.randn(C) * 0.1
    we, be = torch.randn(hid, C, 1, 1) * 0.1, torch.randn(hid) * 0.1
    wp, bp = torch.randn(C, hid, 1, 1) * 0.1, torch.randn(C) * 0.1
    params = (ws, bs, C, eps, we, be, act, [], wp, bp)
    return (f"ConvNeXt C={C} dw k={k} x{e} {H}x{W} N={N}", x,
            lambda x: convnext_block_reference(x, *params), bind_onednn_layers("convnext_block", x.shape, params),
            compile_block("convnext_block", x.shape, params))


def mbconv(N, C, H, W, e, k=3):
    x = torch.randn(N, C, H, W)
    hid = C * e
    we, be = torch.randn(hid, C, 1, 1) * 0.2, torch.randn(hid) * 0.1
    wd, bd = torch.randn(hid, 1, k, k) * 0.3, torch.randn(hid) * 0.1
    wp, bp = torch.randn(C, hid, 1, 1) * 0.1, torch.randn(C) * 0.1
    a = [0.0, 6.0]
    params = (we, be, "hardtanh", a, wd, bd, "hardtanh", a, wp, bp)
    p = k // 2
    ce = PackedConv(we, [1, 1], [0, 0], [1, 1], 1, (N, C, H, W))
    cd = PackedConv(wd, [1, 1], [p, p], [1, 1], hid, (N, hid, H, W))
    cp = PackedConv(wp, [1, 1], [0, 0], [1, 1], 1, (N, hid, H, W))

    def onednn(x):
        h = ce(x, be, None, "hardtanh", a, True)
        h = cd(h, bd, None, "hardtanh", a, True)
        return cp(h, bp, x, "none", [], False)
    return (f"MBConv C={C} x{e} k={k} {H}x{W} N={N}", x,
            lambda x: mbconv_block_reference(x, *params), onednn, compile_block("mbconv_block", x.shape, params))


def mlp(M, D, Hd, norm="layer", act="gelu", gate=False):
    x = torch.randn(M, D)
    nw, nb = torch.randn(D) * 0.1 + 1, (torch.randn(D) * 0.1 if norm == "layer" else None)
    w1, b1 = torch.randn(Hd, D) / D ** 0.5, torch.randn(Hd) * 0.1
    w3, b3 = (torch.randn(Hd, D) / D ** 0.5, None) if gate else (None, None)
    w2, b2 = torch.randn(D, Hd) / Hd ** 0.5, torch.randn(D) * 0.1
    params = (norm, nw if norm != "none" else None, nb, 1e-5, w1, b1, w3, b3, act, [], w2, b2)
    l1, l2 = PackedLinear(w1), PackedLinear(w2)
    l3 = PackedLinear(w3) if gate else None
    from fastc.kernels.blocks import normalized

    def onednn(x):
        n = normalized(x, norm, params[1], nb, 1e-5)
        h = l1(n, b1, None, act, [])
        if gate:
            h = h * l3(n, b3, None, "none", [])
        return l2(h, b2, x, "none", [])
    name = f"MLP D={D} H={Hd} M={M} {norm}+{act}" + ("+gate" if gate else "")
    return (name, x, lambda x: mlp_block_reference(x, *params), onednn, compile_block("mlp_block", x.shape, params))


def problems(only: str | None):
    conv = [
        lambda: convfirst(8, 32, 16, 16, 3, 8, 4),
        lambda: convfirst(8, 64, 8, 8, 3, 8, 4),
        lambda: convfirst(8, 64, 14, 14, 7, 64, 4),
        lambda: convnext(8, 64, 14, 14),
        lambda: convnext(8, 96, 8, 8),
        lambda: mbconv(8, 24, 8, 8, 6),
        lambda: mbconv(8, 32, 4, 4, 6),
        lambda: mbconv(8, 64, 2, 2, 6),
        lambda: mbconv(8, 96, 2, 2, 6),
    ]
    mlps = [
        lambda: mlp(64, 64, 256),
        lambda: mlp(128, 256, 1024),
        lambda: mlp(128, 256, 688, norm="rms", act="silu", gate=True),
    ]
    return (conv if only != "mlp" else []) + (mlps if only != "conv" else [])


def _time(fn, x, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn(x)
    return (time.perf_counter() - t) / reps * 1e3


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--only", choices=["conv", "mlp"])
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for make in problems(args.only):
        try:
            name, x, aten, onednn, block = make()
        except Exception as e:  # noqa: BLE001
            print(f"skipped: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        ref = aten(x)
        for what, fn in (("onednn", onednn), ("block", block)):
            err = (fn(x) - ref).abs().max().item()
            assert err < 1e-3, (name, what, err)
        fns = {"aten": aten, "onednn": onednn, "block": block}
        # reps per timing sample: about 20 ms
        t0 = _time(aten, x, 3)
        reps = max(1, int(20 / max(t0, 1e-3)))
        for fn in fns.values():
            _time(fn, x, reps)
        samples = {k: [] for k in fns}
        for _ in range(args.rounds):
            for k, fn in fns.items():
                samples[k].append(_time(fn, x, reps))
        med = {k: statistics.median(v) for k, v in samples.items()}
        row = dict(problem=name, aten_ms=med["aten"], onednn_ms=med["onednn"], block_ms=med["block"],
                   speedup_vs_onednn=med["onednn"] / med["block"], speedup_vs_aten=med["aten"] / med["block"])
        rows.append(row)
        print(f"{name:44s} aten {med['aten']:8.3f}  onednn {med['onednn']:8.3f}  block {med['block']:8.3f}  "
              f"x{row['speedup_vs_onednn']:.2f} vs onednn  x{row['speedup_vs_aten']:.2f} vs aten", flush=True)
    machine = f"{_cpu_name()}, {args.threads} threads (torch {torch.__version__})"
    md = ["# Block kernels on CPU (bench/block_kernels.py)", "",
          f"Machine: {machine}. Medians of {args.rounds} interleaved rounds, ms per call.", "",
          "(a) per-layer ATen (kernels/blocks.py references), (b) per-layer oneDNN as fastc runs products "
          "(bias + activation fused, residual fused into the last product), (c) the native block kernel "
          "(kernels/block_cpu.py). Speedups are b/c and a/c (> 1: the block kernel is faster).", "",
          "| block | (a) ATen ms | (b) oneDNN ms | (c) block ms | speedup vs oneDNN | speedup vs ATen |",
          "|---|---:|---:|---:|---:|---:|"]
    note = ["", "The machine is a shared 2-core VM: absolute times vary by up to 2x from run to run "
            "(steal time), the ratios less; compare rows of one run only."]
    for r in rows:
        md.append(f"| {r['problem']} | {r['aten_ms']:.3f} | {r['onednn_ms']:.3f} | {r['block_ms']:.3f} | "
                  f"{r['speedup_vs_onednn']:.2f}x | {r['speedup_vs_aten']:.2f}x |")
    text = "\n".join(md + note) + "\n"
    print(text)
    if not args.no_write and args.only is None:
        out = os.path.join(ROOT, "docs", "benchmarks")
        with open(os.path.join(out, "block-kernels-cpu.md"), "w") as fh:
            fh.write(text)
        with open(os.path.join(out, "block-kernels-cpu.json"), "w") as fh:
            json.dump(dict(machine=machine, rounds=args.rounds, rows=rows), fh, indent=1)


if __name__ == "__main__":
    main()
