"""What layer-skip costs and buys on the trained char LM, against dropping the last k blocks.

    .venv/bin/python bench/layer_skip.py [--eval-chars 20000] [--rounds 15] [--out docs/benchmarks]

For k = 1 .. n_layers // 2:

  layer-skip  torch.compile(model, backend="fastc", options={"target": "cpu", "lossy":
              "layer-skip{max_fraction=k/n}", "calibration": 8 training windows (4 score the blocks,
              4 held out), "accuracy_budget": None}): the k least influential blocks (Block
              Influence on the calibration windows) go
  last-k      the naive baseline: the last k blocks replaced by identity in a copy of the model,
              compiled by fastc (target cpu) with no lossy pass

Accuracy: bits per character on held-out text (fastc_eval's char-lm metric, the first
--eval-chars characters), of the eager model with the same blocks replaced by identity (the
pass's graph equals it: tests/passes/test_layer_skip.py). Speed: ms per call of the compiled model
on one window (batch 1, 128 tokens), against fastc without lossy passes; all variants timed side by
side, interleaved round by round, medians. The machine and its load are written with the results.

Writes <out>/layer-skip.md, <out>/layer-skip.json and <out>/layer-skip.png.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import time
import types
from pathlib import Path

import torch
import torch._dynamo
from torch import nn

import fastc
from fastc.costmodel.machine import cpu_name
from fastc_eval import zoo

ROOT = Path(__file__).resolve().parents[1]


class Skip(nn.Module):
    """A block replaced by identity (the LM's blocks take the rotary tables too)."""

    def forward(self, x, *rest):
        return x


def skipped(model: nn.Module, blocks: list[int]) -> nn.Module:
    out = copy.deepcopy(model)
    for i in blocks:
        out.blocks[i] = Skip()
    return out


def compiled(model, **options):
    """fastc's compiled model. Each variant gets a forward of its own code object: Dynamo caches
    compiled frames per code object, and variants sharing CharLM.forward would share one cache
    (and its guards), which skews interleaved timings."""
    def forward(self, tokens):
        return self.inner(tokens)
    compiled.count = getattr(compiled, "count", 0) + 1
    code = forward.__code__.replace(co_name=f"forward_{compiled.count}")
    variant = type(f"Variant{compiled.count}", (nn.Module,), {"forward": types.FunctionType(code, forward.__globals__)})()
    variant.inner = model
    return torch.compile(variant, backend="fastc", options={"target": "cpu", "on_error": "raise", **options})


def call(fn, x):
    with torch.no_grad():
        return fn(x)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--eval-chars", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    args = ap.parse_args()
    torch.manual_seed(0)
    spec = zoo.reference("char-lm")
    model = zoo.load("char-lm").eval()
    n = len(model.blocks)
    windows = spec.calibration(model, 9)
    calibration = [(windows[i:i + 1],) for i in range(8)]
    x = windows[8:9]

    def bpc(m):
        return zoo.char_lm_metrics(m, args.eval_chars)["bpc"]

    variants = {"fastc": ([], compiled(model))}
    call(variants["fastc"][1], x)
    results = {"machine": cpu_name(), "threads": torch.get_num_threads(), "cores": os.cpu_count(),
               "load_before": os.getloadavg()[0], "n_layers": n, "eval_chars": args.eval_chars,
               "baseline_bpc": bpc(model), "rows": []}
    for k in range(1, n // 2 + 1):
        fraction = (k + 0.5) / n  # floor(fraction * n) = k
        before = len(fastc.reports())
        fn = compiled(model, lossy=f"layer-skip{{max_fraction={fraction:.4f}}}", calibration=calibration,
                      accuracy_budget=None)
        call(fn, x)
        (record,) = [r for r in fastc.reports()[before:] if r.lossy][0].lossy
        chosen = sorted(int(w.split(" ")[0].rsplit(".", 1)[1]) for w in record.rewritten)
        assert len(chosen) == k, record.text()
        variants[f"layer-skip k={k}"] = (chosen, fn)
        last = list(range(n - k, n))
        fn_last = compiled(skipped(model, last))
        call(fn_last, x)
        variants[f"last-k k={k}"] = (last, fn_last)
        results["rows"].append({"k": k, "layer_skip_blocks": chosen, "layer_skip_bpc": bpc(skipped(model, chosen)),
                                "last_k_blocks": last, "last_k_bpc": bpc(skipped(model, last)),
                                "influence": record.rewritten})
    times = {name: [] for name in variants}
    for _ in range(args.rounds):  # interleaved: every variant once per round
        for name, (_, fn) in variants.items():
            call(fn, x)
            start = time.perf_counter()
            call(fn, x)
            times[name].append((time.perf_counter() - start) * 1e3)
    ms = {name: statistics.median(t) for name, t in times.items()}
    results["ms"] = ms
    results["load_after"] = os.getloadavg()[0]
    for row in results["rows"]:
        row["layer_skip_speedup"] = ms["fastc"] / ms[f"layer-skip k={row['k']}"]
        row["last_k_speedup"] = ms["fastc"] / ms[f"last-k k={row['k']}"]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layer-skip.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out / "layer-skip.md")
    plot(results, out / "layer-skip.png")
    print((out / "layer-skip.md").read_text())


def write_markdown(r: dict, path: Path):
    lines = [
        "# layer-skip on the char LM: accuracy against speed-up",
        "",
        "Generated by `bench/layer_skip.py` (see its docstring for the method). Trained char-lm "
        f"({r['n_layers']} layers), bits per character on the first {r['eval_chars']:,} held-out characters "
        f"(lower is better; the full model: {r['baseline_bpc']:.4f}). Speed: fastc target cpu, batch 1 x 128 "
        f"tokens, median ms per call, every variant interleaved. Machine: {r['machine']}, {r['cores']} cores, "
        f"torch threads {r['threads']}; load average {r['load_before']:.1f} before, {r['load_after']:.1f} after "
        "(a shared machine: the speed-ups are indicative).",
        "",
        f"fastc without lossy passes: {r['ms']['fastc']:.3f} ms per call.",
        "",
        "| k | layer-skip blocks | bpc | speed-up | last-k blocks | bpc | speed-up |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(f"| {row['k']} | {row['layer_skip_blocks']} | {row['layer_skip_bpc']:.4f} | "
                     f"{row['layer_skip_speedup']:.2f}x | {row['last_k_blocks']} | {row['last_k_bpc']:.4f} | "
                     f"{row['last_k_speedup']:.2f}x |")
    lines += ["", "Block Influence of the removed blocks (layer-skip's proposals, least influential first):", ""]
    lines += [f"- k={row['k']}: " + "; ".join(row["influence"]) for row in r["rows"]]
    lines += ["", "![bpc against speed-up](layer-skip.png)", ""]
    path.write_text("\n".join(lines))


def plot(r: dict, path: Path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (("layer_skip", "layer-skip (Block Influence)"), ("last_k", "drop the last k blocks")):
        xs = [1.0] + [row[f"{key}_speedup"] for row in r["rows"]]
        ys = [r["baseline_bpc"]] + [row[f"{key}_bpc"] for row in r["rows"]]
        ax.plot(xs, ys, marker="o", label=label)
        for row in r["rows"]:
            ax.annotate(f"k={row['k']}", (row[f"{key}_speedup"], row[f"{key}_bpc"]), fontsize=7)
    ax.set_xlabel("speed-up over fastc without lossy passes (target cpu)")
    ax.set_ylabel("bits per character (held-out)")
    ax.set_title("char LM: layer-skip vs dropping the last k blocks")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
