"""BCQ Triton kernels on a CUDA GPU: time against cuBLAS fp16 and dequantize-then-matmul.

For LLM-sized layers, bit widths 2-4 (group 128) and batches 1, 8 and 64, it first checks every
kernel against the reference path and the dense fp16 matmul, then times (triton.testing.do_bench,
median ms):
  cuBLAS fp16          torch.matmul(x, W16^T) with the dense fp16 weight
  dequant + matmul     unpack the packed weight to fp16 with PyTorch ops, then torch.matmul
  bcq gemv / gemv_lut / gemm   the Triton kernels on the packed weight (bias fused)
and the bytes of the packed weight against fp16. Writes a markdown table (default
docs/benchmarks/bcq_kernels.md). Without a CUDA GPU it says so and exits 0.

    python bench/bcq_kernels.py [--out docs/benchmarks/bcq_kernels.md] [--quick]
"""
import argparse
import sys
from pathlib import Path

import torch

LAYERS = [(4096, 4096), (11008, 4096), (4096, 11008)]
BITS = (2, 3, 4)
BATCHES = (1, 8, 64)
GROUP_SIZE = 128
KERNELS = ("gemv", "gemv_lut", "gemm")


def random_packed(out_features, in_features, bits, device):
    """Timing does not depend on the values: random codes and positive fp16 scales."""
    from fastc.kernels.bcq import PackedBCQ
    generator = torch.Generator(device="cpu").manual_seed(out_features * 7 + bits)
    words = torch.randint(-2 ** 31, 2 ** 31 - 1, (bits, in_features // 32, out_features),
                          dtype=torch.int64, generator=generator).to(torch.int32)
    scales = (torch.rand(bits, in_features // GROUP_SIZE, out_features, generator=generator)
              * 0.02 / 2 ** torch.arange(bits)[:, None, None]).half()
    return PackedBCQ(words.to(device), scales.to(device), out_features, in_features, GROUP_SIZE)


def check(packed, x, bias):
    """Every kernel against the reference path (fp32) and the dense fp16 matmul."""
    from fastc.kernels.bcq import bcq_linear, dequantize, reference_linear
    reference = reference_linear(x, packed, bias)
    dense = torch.nn.functional.linear(x.float(), dequantize(packed), bias.float())
    scale = float(dense.abs().max())
    for kernel in KERNELS:
        y = bcq_linear(x, packed, bias, backend="triton", kernel=kernel).float()
        for name, expected in (("reference", reference), ("dense", dense)):
            err = float((y - expected).abs().max())
            if not err <= 2e-3 * scale + 1e-2:
                raise SystemExit(f"{kernel} differs from the {name} path by {err:.3g} "
                                 f"(output scale {scale:.3g}) for {tuple(x.shape)} x "
                                 f"{packed.out_features}x{packed.in_features} "
                                 f"{packed.num_bits}-bit; not timing a wrong kernel")


def time_layer(out_features, in_features, bits, batches, device):
    from triton.testing import do_bench

    from fastc.kernels.bcq import bcq_linear, dequantize
    packed = random_packed(out_features, in_features, bits, device)
    dense16 = dequantize(packed).half()
    bias = torch.randn(out_features, device=device, dtype=torch.float16)
    rows = []
    for batch in batches:
        x = torch.randn(batch, in_features, device=device, dtype=torch.float16)
        check(packed, x, bias)
        timings = {
            "cuBLAS fp16": do_bench(lambda: torch.nn.functional.linear(x, dense16, bias)),
            "dequant + matmul": do_bench(
                lambda: torch.nn.functional.linear(x, dequantize(packed).half(), bias)),
        }
        for kernel in KERNELS:
            timings[f"bcq {kernel}"] = do_bench(
                lambda: bcq_linear(x, packed, bias, backend="triton", kernel=kernel))
        rows.append((batch, timings))
    return packed, rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/benchmarks/bcq_kernels.md")
    parser.add_argument("--quick", action="store_true", help="one layer, 3 bits only")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("bcq_kernels: no CUDA GPU is present; these are GPU kernel timings, nothing to "
              "measure here (the CPU reference path is covered by tests/kernels).")
        return 0
    try:
        import triton  # noqa: F401
    except ImportError:
        print("bcq_kernels: triton is not installed; nothing to measure")
        return 0
    device = torch.device("cuda")
    layers = LAYERS[:1] if args.quick else LAYERS
    bits_list = (3,) if args.quick else BITS
    names = ["cuBLAS fp16", "dequant + matmul"] + [f"bcq {k}" for k in KERNELS]
    lines = ["# BCQ Triton kernels against cuBLAS fp16", "",
             f"Written by `bench/bcq_kernels.py` on {torch.cuda.get_device_name()} "
             f"(torch {torch.__version__}, triton {triton.__version__}). fp16 activations, "
             f"group size {GROUP_SIZE}, fused fp16 bias; median ms from triton.testing.do_bench. "
             "Every kernel was first checked against the reference path and the dense matmul.",
             "", "| layer (out x in) | bits | batch | " + " | ".join(names)
             + " | cuBLAS ms / best bcq ms | packed MiB | fp16 MiB |",
             "|---|---:|---:|" + "---:|" * len(names) + "---:|---:|---:|"]
    for out_features, in_features in layers:
        for bits in bits_list:
            packed, rows = time_layer(out_features, in_features, bits, BATCHES, device)
            for batch, timings in rows:
                best = min(timings[f"bcq {k}"] for k in KERNELS)
                line = (f"| {out_features} x {in_features} | {bits} | {batch} | "
                        + " | ".join(f"{timings[n]:.4f}" for n in names)
                        + f" | {timings['cuBLAS fp16'] / best:.2f}x | "
                        f"{packed.nbytes() / 2 ** 20:.2f} | {packed.fp16_nbytes() / 2 ** 20:.2f} |")
                lines.append(line)
                print(line, flush=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
