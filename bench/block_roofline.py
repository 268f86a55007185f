"""Why blocks fuse, on the roofline: a network profiled layer by layer (fuse-blocks disabled) and
with its block ops, each kernel / library call / kind of ATen op a point at its arithmetic
intensity and achieved GFLOP/s under this machine's measured roof (after Lavin's efficiency-gap
figure). Writes the two tables (markdown) and the plot (PNG).

    python bench/block_roofline.py [--model convfirst] [--batch 8] [--out docs/benchmarks/block-roofline]
"""
from __future__ import annotations

import argparse

import torch

from fastc.roofline import roofline_model, roofline_text
from fastc.costmodel import machine


def plot(series: dict, peak, path: str, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    points = [r for rows in series.values() for r in rows if r.flops > 0 and r.ms > 0 and r.bytes > 0]
    lo = min([r.intensity for r in points] + [0.05]) / 2
    hi = max([r.intensity for r in points] + [peak.flops / peak.bandwidth * 4]) * 2
    xs = [lo * (hi / lo) ** (i / 200) for i in range(201)]
    ax.plot(xs, [peak.roof(x) / 1e9 for x in xs], color="black", label="roof (measured peak)")
    total = max(sum(r.ms for r in rows) for rows in series.values()) or 1.0
    for (label, rows), color, marker in zip(series.items(), ("tab:orange", "tab:blue"), ("s", "o")):
        rows = [r for r in rows if r.flops > 0 and r.ms > 0 and r.bytes > 0]
        ms = sum(r.ms for r in rows)
        ax.scatter([r.intensity for r in rows], [r.gflops for r in rows], s=[15 + 500 * r.ms / total for r in rows],
                   alpha=0.55, color=color, marker=marker, label=f"{label}: {ms:.2f} ms in these rows")
        for r in sorted(rows, key=lambda r: -r.ms)[:4]:
            ax.annotate(r.name.split(".")[-1].removeprefix("aten::"), (r.intensity, r.gflops), fontsize=6)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte moved)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="convfirst")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--out", default="docs/benchmarks/block-roofline")
    args = parser.parse_args()
    series, texts, peak = {}, [], None
    for label, options in (("layers (fuse-blocks disabled)", {"disable": "fuse-blocks"}), ("block ops", {})):
        rows, peak, profile = roofline_model(args.model, batch=args.batch, calls=args.calls, options=options)
        series[label] = rows
        texts.append(f"## {label}: fastc {profile.fastc_ms:.3f} ms per forward, eager {profile.eager_ms:.3f} ms\n\n"
                     "```\n" + roofline_text(rows, peak) + "\n```\n")
    title = (f"{args.model}, batch {args.batch}: layers vs block ops ({machine.describe()}, "
             f"{torch.get_num_threads()} threads)")
    plot(series, peak, args.out + ".png", title)
    text = (f"# Roofline: {args.model} layer by layer vs with block ops\n\nWritten by `bench/block_roofline.py` "
            f"(`{args.model}`, batch {args.batch}); machine: {machine.describe()}. Per row: FLOPs and bytes per "
            "forward (a block op's bytes are its input, output and weights, each read or written once: what "
            "the block kernel moves if its tile's intermediate stays in cache, as it is built to), the "
            "measured time (torch.profiler, the faster half of the calls), achieved rate and fraction of "
            "the roof at that intensity. Plot: " + f"`{args.out.split('/')[-1]}.png`.\n\n" + "\n".join(texts))
    with open(args.out + ".md", "w") as f:
        f.write(text)
    print(text)


if __name__ == "__main__":
    main()
