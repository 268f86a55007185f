"""Triton block kernels (kernels/block_triton.py) against the blocks' per-layer ATen ops on a CUDA GPU.

For ConvNeXt-T blocks (convnext_block: depthwise 7x7, per-pixel channel norm, x4 gelu MLP),
a ConvFirst block (convfirst_block), MobileNetV2 inverted residuals (mbconv) and transformer MLP
blocks at model sizes, in float32 and float16, it first checks the Triton kernel against the
reference (the block's ATen ops one by one, kernels/blocks.py), then times both with
triton.testing.do_bench (median ms) and prints a markdown table headed by the GPU's name
(also written to --out when given).

float32: the Triton kernels never use TF32; by default neither does ATen here (cuDNN's
convolutions otherwise would), so both sides compute the same thing. --tf32 lets ATen use it.

    python bench/block_kernels_gpu.py [--out docs/benchmarks/block_kernels_gpu.md] [--batch 8]
                                      [--dtypes float32,float16] [--quick] [--tf32]

Needs a CUDA GPU: without one it says so and exits with status 2.
"""
import argparse
import sys
import zlib
from pathlib import Path

import torch

# (name, op, problem options)
CONVNEXT = dict(k=7, expand=4, act="gelu", eps=1e-6)
PROBLEMS = [
    ("ConvNeXt-T stage 1 (C96 56x56 dw7 norm x4 gelu)", "convnext_block", dict(c=96, hw=56, groups=96, **CONVNEXT)),
    ("ConvNeXt-T stage 2 (C192 28x28 dw7 norm x4 gelu)", "convnext_block",
     dict(c=192, hw=28, groups=192, **CONVNEXT)),
    ("ConvNeXt-T stage 3 (C384 14x14 dw7 norm x4 gelu)", "convnext_block",
     dict(c=384, hw=14, groups=384, **CONVNEXT)),
    ("ConvNeXt-T stage 4 (C768 7x7 dw7 norm x4 gelu)", "convnext_block", dict(c=768, hw=7, groups=768, **CONVNEXT)),
    ("ConvFirst g4 (C64 28x28 k3 x4 relu)", "convfirst_block",
     dict(c=64, hw=28, groups=4, k=3, expand=4, act="relu")),
    ("MobileNetV2 (C24 56x56 x6 relu6)", "mbconv_block", dict(c=24, hw=56, k=3, expand=6, act="hardtanh6")),
    ("MobileNetV2 (C32 28x28 x6 relu6)", "mbconv_block", dict(c=32, hw=28, k=3, expand=6, act="hardtanh6")),
    ("MobileNetV2 (C64 14x14 x6 relu6)", "mbconv_block", dict(c=64, hw=14, k=3, expand=6, act="hardtanh6")),
    ("MobileNetV2 (C96 14x14 x6 relu6)", "mbconv_block", dict(c=96, hw=14, k=3, expand=6, act="hardtanh6")),
    ("MobileNetV2 (C160 7x7 x6 relu6)", "mbconv_block", dict(c=160, hw=7, k=3, expand=6, act="hardtanh6")),
    ("ViT-S MLP (D384 H1536 layer gelu, 197 tokens)", "mlp_block",
     dict(d=384, hidden=1536, tokens=197, norm="layer", act="gelu")),
    ("ViT-B MLP (D768 H3072 layer gelu, 197 tokens)", "mlp_block",
     dict(d=768, hidden=3072, tokens=197, norm="layer", act="gelu")),
    ("SwiGLU MLP (D1024 H2816 rms silu gate, 512 tokens)", "mlp_block",
     dict(d=1024, hidden=2816, tokens=512, norm="rms", act="silu", gate=True)),
]
QUICK = {0, 5, 11}


def build(op, opts, batch, dtype, device):
    """(x, params) of a problem, random values of unit-variance activations."""
    generator = torch.Generator(device="cpu").manual_seed(zlib.crc32(repr((op, sorted(opts.items()))).encode()))

    def r(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale).to(device, dtype)

    act, act_args = ("hardtanh", [0.0, 6.0]) if opts.get("act") == "hardtanh6" else (opts["act"], [])
    if op == "mlp_block":
        d, hid = opts["d"], opts["hidden"]
        x = r(batch, opts["tokens"], d)
        gate = opts.get("gate", False)
        norm = opts["norm"]
        params = [norm, 1.0 + r(d, scale=0.1), r(d, scale=0.1) if norm == "layer" else None, 1e-5,
                  r(hid, d, scale=d ** -0.5), None if gate else r(hid, scale=0.1),
                  r(hid, d, scale=d ** -0.5) if gate else None, None, act, act_args,
                  r(d, hid, scale=hid ** -0.5), None if gate else r(d, scale=0.1)]
        return x, params
    c, hw, k, hid = opts["c"], opts["hw"], opts["k"], opts["c"] * opts["expand"]
    x = r(batch, c, hw, hw)
    if op in ("convfirst_block", "convnext_block"):
        g = opts["groups"]
        params = [r(c, c // g, k, k, scale=(c // g * k * k) ** -0.5), r(c, scale=0.1), g,
                  r(hid, c, 1, 1, scale=c ** -0.5), r(hid, scale=0.1), act, act_args,
                  r(c, hid, 1, 1, scale=hid ** -0.5), r(c, scale=0.1)]
        if op == "convnext_block":
            params.insert(3, opts["eps"])
    else:
        params = [r(hid, c, 1, 1, scale=c ** -0.5), r(hid, scale=0.1), act, act_args,
                  r(hid, 1, k, k, scale=1.0 / k), r(hid, scale=0.1), act, act_args,
                  r(c, hid, 1, 1, scale=hid ** -0.5), r(c, scale=0.1)]
    return x, params


def check(name, op, x, params, reference, triton_block):
    expected = reference(x, *params).float()
    got = triton_block(op, x, *params).float()
    scale = float(expected.abs().max())
    err = float((got - expected).abs().max())
    tolerance = (1e-3 * max(scale, 1.0)) if x.dtype == torch.float32 else (4e-3 * scale + 2e-2)
    if not err <= tolerance:
        raise SystemExit(f"{name} {x.dtype}: the Triton block kernel differs from the reference by {err:.3g} "
                         f"(output scale {scale:.3g}); not timing a wrong kernel")
    return err


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the markdown table here")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtypes", default="float32,float16")
    parser.add_argument("--quick", action="store_true", help="three problems only")
    parser.add_argument("--tf32", action="store_true", help="let ATen's fp32 convolutions / matmuls use TF32")
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print("bench/block_kernels_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, CUDA build {torch.version.cuda}); nothing was measured.", file=sys.stderr)
        return 2
    from triton.testing import do_bench

    from fastc.kernels import blocks
    from fastc.kernels.block_triton import BlockUnsupported, triton_block

    torch.backends.cudnn.allow_tf32 = args.tf32
    torch.backends.cuda.matmul.allow_tf32 = args.tf32
    device = torch.device("cuda")
    gpu = torch.cuda.get_device_name(device)
    dtypes = [getattr(torch, d) for d in args.dtypes.split(",")]
    rows = []
    for i, (name, op, opts) in enumerate(PROBLEMS):
        if args.quick and i not in QUICK:
            continue
        reference = getattr(blocks, f"{op}_reference")
        for dtype in dtypes:
            x, params = build(op, opts, args.batch, dtype, device)
            try:
                err = check(name, op, x, params, reference, triton_block)
            except BlockUnsupported as e:
                rows.append((name, str(dtype).replace("torch.", ""), "-", "-", "-", f"unsupported: {e}"))
                continue
            with torch.no_grad():
                aten_ms = do_bench(lambda: reference(x, *params), return_mode="median")
                triton_ms = do_bench(lambda: triton_block(op, x, *params), return_mode="median")
            rows.append((name, str(dtype).replace("torch.", ""), f"{aten_ms:.4f}", f"{triton_ms:.4f}",
                         f"{aten_ms / triton_ms:.2f}x", f"{err:.2g}"))
            print(f"{name} {dtype}: ATen {aten_ms:.4f} ms, Triton block {triton_ms:.4f} ms", file=sys.stderr)
            del x, params
            torch.cuda.empty_cache()

    lines = [f"# Triton block kernels vs per-layer ATen on {gpu}", "",
             f"batch {args.batch}; median ms (triton.testing.do_bench); torch {torch.__version__}, "
             f"triton {__import__('triton').__version__}; ATen TF32 {'on' if args.tf32 else 'off'}.", "",
             "| block | dtype | ATen per-layer ms | Triton block ms | speedup | max abs err |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {' | '.join(row)} |" for row in rows]
    table = "\n".join(lines) + "\n"
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
