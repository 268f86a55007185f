"""What prune-channels buys on the CPU target (speed) and costs (accuracy), against magnitude scores.

    .venv/bin/python bench/prune_channels.py [--sparsities 0.25 0.5] [--repeats 15] [--out docs/benchmarks]
        [--no-accuracy]

Speed: a random-weight pre-norm transformer whose FFN dominates (d=256, ffn=2048, 4 layers, 4 heads,
GELU MLP, sequence 64, batch 1), compiled with torch.compile(backend="fastc", target="cpu") without
lossy passes and with "prune-channels{sparsity=S}" (no budget: every FFN group is pruned; only FFN
hidden channels are prunable here, attention and residual channels are left alone). The compiled
models are timed interleaved (one call of each per round), after warm-up; medians reported.

Accuracy: the trained char-lm (fastc_eval reference, SwiGLU FFN), bits per character on its
held-out text (fastc_eval.measure) with prune-channels at the same sparsities, score=wanda vs
score=magnitude (the same channel counts: the allocation differs only through the scores), and
wanda with refit=true.

Writes <out>/prune-channels.md, <out>/prune-channels.json and <out>/prune-channels.png.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parents[1]


class Block(nn.Module):
    def __init__(self, d: int, ffn: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.up, self.down = nn.Linear(d, ffn), nn.Linear(ffn, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(b, t, d)
        x = x + self.o(y)
        return x + self.down(F.gelu(self.up(self.norm2(x))))


class FFNHeavy(nn.Module):
    def __init__(self, vocab=256, d=256, ffn=2048, layers=4, heads=4):
        super().__init__()
        self.embed = nn.Embedding(vocab, d)
        self.blocks = nn.ModuleList(Block(d, ffn, heads) for _ in range(layers))
        self.head = nn.Linear(d, vocab)

    def forward(self, ids):
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def speed(sparsities: list[float], repeats: int) -> dict:
    import fastc  # noqa: F401  (registers the backend)
    torch.manual_seed(0)
    model = FFNHeavy().eval()
    calibration = [(torch.randint(0, 256, (1, 64)),) for _ in range(4)]
    x = torch.randint(0, 256, (1, 64))
    compiled = {"fastc": torch.compile(model, backend="fastc", options={"target": "cpu"})}
    for s in sparsities:
        compiled[f"pruned {s:g}"] = torch.compile(model, backend="fastc", options={
            "target": "cpu", "lossy": f"prune-channels{{sparsity={s}}}", "calibration": calibration,
            "accuracy_budget": None})
    times = {name: [] for name in compiled}
    with torch.no_grad():
        for fn in compiled.values():
            for _ in range(3):
                fn(x)
        for _ in range(repeats):
            for name, fn in compiled.items():
                start = time.perf_counter()
                fn(x)
                times[name].append((time.perf_counter() - start) * 1e3)
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"ms": med, "speedup": {name: med["fastc"] / m for name, m in med.items()},
            "load": os.getloadavg()}


def accuracy(sparsities: list[float]) -> dict:
    from fastc_eval import measure
    out = {"none": measure("char-lm", "").after["bpc"].mean}
    for s in sparsities:
        for label, options in (("wanda", ""), ("magnitude", ",score=magnitude"), ("wanda+refit", ",refit=true")):
            out[f"{label} {s:g}"] = measure("char-lm", f"prune-channels{{sparsity={s}{options}}}").after["bpc"].mean
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    parser.add_argument("--no-accuracy", action="store_true")
    args = parser.parse_args()
    from fastc.costmodel.machine import cpu_name
    result = {"machine": cpu_name(), "threads": torch.get_num_threads(),
              "speed": speed(args.sparsities, args.repeats)}
    if not args.no_accuracy:
        result["accuracy"] = accuracy(args.sparsities)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prune-channels.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    if "accuracy" in result:
        plot(result, args.sparsities, out / "prune-channels.png")


def plot(result: dict, sparsities: list[float], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5, 3.5))
    acc, up = result["accuracy"], result["speed"]["speedup"]
    ax.scatter([1.0], [acc["none"]], color="black", label="fastc, no pruning")
    for label, marker in (("wanda", "o"), ("magnitude", "x"), ("wanda+refit", "^")):
        xs = [up[f"pruned {s:g}"] for s in sparsities]
        ys = [acc[f"{label} {s:g}"] for s in sparsities]
        ax.plot(xs, ys, marker=marker, label=label)
    ax.set_xlabel("speed-up on target cpu (FFN-heavy transformer)")
    ax.set_ylabel("char-lm bits per character (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
