"""BCQ quantization error against round-to-nearest, 1 to 4 bits.

For synthetic weights (Gaussian, and heavy-tailed Student-t with 3 degrees of freedom) and
correlated calibration inputs, measures
  weight error  ||W - W_q||^2 / ||W||^2
  output error  ||X W^T - X W_q^T|| / ||X W^T||   on held-out inputs X
for round-to-nearest (asymmetric and symmetric, per group) and BCQ (greedy only; alternating;
power-of-two scales; activation-aware; activation-aware with power-of-two scales).
Writes docs/benchmarks/bcq_error.md and docs/benchmarks/bcq_error.png.

    python bench/bcq_error.py [--out docs/benchmarks] [--rows 512] [--cols 1024]
"""
import argparse
import time
from pathlib import Path

import torch

from fastc.kernels.bcq import bcq_quantize, pack, rtn_dequantized
from fastc.costmodel.machine import cpu_name

GROUP_SIZE = 128
POW2_TERMS = 2
BITS = (1, 2, 3, 4)


def weights(kind: str, rows: int, cols: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if kind == "gaussian":
        return torch.randn(rows, cols, generator=generator) * 0.02
    torch.manual_seed(0)
    return torch.distributions.StudentT(3.0).sample((rows, cols)) * 0.02


def inputs(samples: int, cols: int, seed: int) -> torch.Tensor:
    """Correlated activations: a low-rank mixture plus noise, with a few outlier channels."""
    generator = torch.Generator().manual_seed(1)  # same mixing for calibration and test
    mix = torch.randn(cols // 8, cols, generator=generator)
    outliers = torch.randperm(cols, generator=generator)[:cols // 64]
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, cols // 8, generator=generator) @ mix / (cols // 8) ** 0.5
    x += 0.2 * torch.randn(samples, cols, generator=generator)
    x[:, outliers] *= 8.0
    return x


def methods(hessian):
    yield "RTN asym", lambda w, b: rtn_dequantized(w, b, GROUP_SIZE)
    yield "RTN sym", lambda w, b: rtn_dequantized(w, b, GROUP_SIZE, symmetric=True)
    yield "BCQ greedy", lambda w, b: bcq_quantize(w, b, GROUP_SIZE, rounds=0).dequantize()
    yield "BCQ", lambda w, b: bcq_quantize(w, b, GROUP_SIZE).dequantize()
    yield "BCQ pow2", lambda w, b: bcq_quantize(w, b, GROUP_SIZE,
                                                pow2_terms=POW2_TERMS).dequantize()
    yield "BCQ act-aware", lambda w, b: bcq_quantize(w, b, GROUP_SIZE,
                                                     hessian=hessian).dequantize()
    yield "BCQ act-aware pow2", lambda w, b: bcq_quantize(
        w, b, GROUP_SIZE, hessian=hessian, pow2_terms=POW2_TERMS).dequantize()


def measure(rows: int, cols: int):
    calibration = inputs(4 * cols, cols, seed=2)
    test = inputs(2 * cols, cols, seed=3)
    hessian = calibration.T @ calibration
    results = {}
    for kind in ("gaussian", "student_t"):
        w = weights(kind, rows, cols)
        exact = test @ w.T
        for name, quantize in methods(hessian):
            for bits in BITS:
                start = time.perf_counter()
                w_hat = quantize(w, bits)
                seconds = time.perf_counter() - start
                results[kind, name, bits] = {
                    "weight": float((w - w_hat).pow(2).sum() / w.pow(2).sum()),
                    "output": float((test @ w_hat.T - exact).norm() / exact.norm()),
                    "seconds": seconds}
    return results


def packed_sizes(rows: int, cols: int):
    sizes = {}
    for bits in BITS:
        packed = pack(bcq_quantize(torch.randn(rows, cols), bits, GROUP_SIZE, rounds=0))
        sizes[bits] = (packed.nbytes(), packed.fp16_nbytes())
    return sizes


def write_markdown(path: Path, results, sizes, rows, cols, wall):
    names = [name for name, _ in methods(None)]
    lines = [
        "# BCQ quantization error vs round-to-nearest",
        "",
        f"Written by `bench/bcq_error.py` on {cpu_name()} (CPU only; torch {torch.__version__}, "
        f"{wall:.0f} s). Weights {rows} x {cols}, group size {GROUP_SIZE}, power-of-two scales "
        f"with at most {POW2_TERMS} terms, 10 alternating rounds. Calibration: {4 * cols} "
        f"correlated input rows (low rank + noise + outlier channels); output error on "
        f"{2 * cols} held-out rows from the same distribution.",
        "",
        "Weight error = ||W - W_q||^2 / ||W||^2; output error = ||X W^T - X W_q^T|| / ||X W^T||. "
        "Lower is better; **bold** is the best per row.",
        ""]
    for kind, title in (("gaussian", "Gaussian weights"), ("student_t", "Student-t (3 dof) weights")):
        for metric in ("weight", "output"):
            lines += [f"## {title}: {metric} error", "",
                      "| bits | " + " | ".join(names) + " |",
                      "|---:|" + "---:|" * len(names)]
            for bits in BITS:
                values = [results[kind, name, bits][metric] for name in names]
                best = min(values)
                cells = [f"**{v:.4f}**" if v == best else f"{v:.4f}" for v in values]
                lines.append(f"| {bits} | " + " | ".join(cells) + " |")
            lines.append("")
    lines += ["## Packed size (BCQ, fp16 scales) against fp16", "",
              "| bits | packed bytes | fp16 bytes | ratio | bits per weight |", "|---:|---:|---:|---:|---:|"]
    for bits, (packed, dense) in sizes.items():
        lines.append(f"| {bits} | {packed} | {dense} | {packed / dense:.3f} | "
                     f"{8 * packed / (rows * cols):.3f} |")
    lines += ["", "## Quantization time (s, this CPU, Gaussian weights)", "",
              "| bits | " + " | ".join(names) + " |", "|---:|" + "---:|" * len(names)]
    for bits in BITS:
        lines.append(f"| {bits} | " + " | ".join(
            f"{results['gaussian', name, bits]['seconds']:.2f}" for name in names) + " |")
    path.write_text("\n".join(lines) + "\n")


def write_plot(path: Path, results):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = [name for name, _ in methods(None)]
    figure, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for row, kind in enumerate(("gaussian", "student_t")):
        for column, metric in enumerate(("weight", "output")):
            ax = axes[row][column]
            for name in names:
                style = "--" if name.startswith("RTN") else "-"
                ax.plot(BITS, [results[kind, name, b][metric] for b in BITS], style, marker="o",
                        label=name)
            ax.set_yscale("log")
            ax.set_title(f"{kind}: {metric} error")
            ax.set_xticks(BITS)
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("bits")
    axes[0][0].legend(fontsize=8)
    figure.suptitle(f"BCQ vs round-to-nearest, group {GROUP_SIZE} ({cpu_name()})")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/benchmarks")
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=1024)
    args = parser.parse_args()
    torch.set_num_threads(1)  # small per-group ops: one thread avoids OpenMP overhead
    start = time.perf_counter()
    results = measure(args.rows, args.cols)
    sizes = packed_sizes(args.rows, args.cols)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_markdown(out / "bcq_error.md", results, sizes, args.rows, args.cols,
                   time.perf_counter() - start)
    write_plot(out / "bcq_error.png", results)
    print((out / "bcq_error.md").read_text())


if __name__ == "__main__":
    main()
