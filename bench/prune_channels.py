"""What prune-channels buys on the CPU target (speed) and costs (accuracy), against magnitude scores.

    .venv/bin/python bench/prune_channels.py                  # full run (writes docs/benchmarks)
    .venv/bin/python bench/prune_channels.py --quick          # sparsity 0.5 only, 5 rounds, 4,000 eval chars
    .venv/bin/python bench/prune_channels.py --no-accuracy    # speed only

Speed: a random-weight pre-norm transformer whose FFN dominates (d=256, ffn=2048, 4 layers, 4 heads,
GELU MLP, sequence 64, batch 1), compiled with torch.compile(backend="fastc", target="cpu") without
lossy passes ("fastc", the baseline) and with "prune-channels{sparsity=S}" (no budget: every FFN
group is pruned; only FFN hidden channels are prunable here, attention and residual channels are
left alone). Each variant is its own model copy behind a forward with a code object of its own,
compiled once (Dynamo caches compiled code per code object: variants sharing FFNHeavy.forward would
share one cache and recompile against each other); the uncompressed variant's output is checked
against eager (assert_close), each pruned variant's report must show the FFN groups pruned, and
its output's relative error against the unpruned model is recorded. Timing: --warmup untimed
calls per variant, then --rounds interleaved rounds (the order rotates; per round and variant one
untimed call and --calls timed calls, averaged), medians over rounds, with
torch._dynamo.config.error_on_recompile on and a check that nothing was compiled meanwhile
(layer_skip.py's timed_rounds).

Accuracy (skip with --no-accuracy): the trained char-lm (fastc_eval reference, SwiGLU FFN), bits
per character on its held-out text (fastc_eval.measure; --eval-chars characters, default the
reference metric's 65,536) with prune-channels at the same sparsities, score=wanda vs
score=magnitude (the same channel counts: the allocation differs only through the scores), and
wanda with refit=true.

Writes <out>/prune-channels.md, <out>/prune-channels.json and (with accuracy) <out>/prune-channels.png.
"""
from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from layer_skip import check_output, compile_variant, kernel_choices, load, machine, timed_rounds  # noqa: E402

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


def speed(sparsities: list[float], rounds: int, calls: int, warmup: int) -> dict:
    started = time.time()
    torch.manual_seed(0)
    model = FFNHeavy().eval()
    calibration = [(torch.randint(0, 256, (1, 64)),) for _ in range(4)]
    x = torch.randint(0, 256, (1, 64))
    variants, checks = {}, {}
    fn, report = compile_variant("fastc", copy.deepcopy(model), x)
    checks["fastc"] = {"max_abs_error_vs_eager": check_output("fastc", fn, model, x),
                       "kernel_choices": kernel_choices(report)}
    variants["fastc"] = fn
    with torch.no_grad():
        want = model(x)
    for s in sparsities:
        name = f"pruned {s:g}"
        fn, report = compile_variant(name, copy.deepcopy(model), x, lossy=f"prune-channels{{sparsity={s}}}",
                                     calibration=calibration, accuracy_budget=None)
        (record,) = report.lossy
        assert len(record.rewritten) == len(model.blocks) and not record.left_out, record.text()
        with torch.no_grad():
            got = fn(x)
        assert torch.isfinite(got).all(), name
        pruned = [w.removeprefix("inner.") for w in record.rewritten]
        checks[name] = {"pruned": pruned, "weight_bytes": [record.weight_bytes_before, record.weight_bytes_after],
                        "relative_error_vs_unpruned": ((got - want).norm() / want.norm()).item(),
                        "kernel_choices": kernel_choices(report)}
        variants[name] = fn
        print(f"{name}: compiled; " + "; ".join(pruned), flush=True)
    print(f"compiled and checked ({time.time() - started:.0f} s); timing", flush=True)
    eager_ms = statistics.median(timed_rounds({"eager": model}, x, max(3, rounds // 3), calls, warmup)["eager"])
    times = timed_rounds(variants, x, rounds, calls, warmup)
    print(f"timed ({time.time() - started:.0f} s)", flush=True)
    med = {name: statistics.median(t) for name, t in times.items()}
    return {"ms": med, "speedup": {name: med["fastc"] / m for name, m in med.items()}, "eager_ms": eager_ms,
            "ms_min_max": {name: [round(min(t), 3), round(max(t), 3)] for name, t in times.items()},
            "checks": checks}


def accuracy(sparsities: list[float], eval_chars: int | None) -> dict:
    from fastc_eval import measure, zoo
    kw = {} if eval_chars is None else {"eval_fn": lambda m: zoo.char_lm_metrics(m, eval_chars)}
    out = {"none": measure("char-lm", "", **kw).after["bpc"].mean}
    for s in sparsities:
        for label, options in (("wanda", ""), ("magnitude", ",score=magnitude"), ("wanda+refit", ",refit=true")):
            out[f"{label} {s:g}"] = measure("char-lm", f"prune-channels{{sparsity={s}{options}}}", **kw).after["bpc"].mean
            print(f"accuracy {label} {s:g}: bpc {out[f'{label} {s:g}']:.4f}", flush=True)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a validation run: sparsity 0.5 only, 5 rounds, 3 warm-up calls, 4,000 eval chars "
                             "(the files are marked as such)")
    parser.add_argument("--sparsities", type=float, nargs="+", help="default 0.25 0.5 (quick: 0.5)")
    parser.add_argument("--rounds", "--repeats", type=int, help="interleaved timing rounds (default 15; quick 5)")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per variant per round (averaged)")
    parser.add_argument("--warmup", type=int, help="untimed calls per variant before the rounds (default 20; quick 3)")
    parser.add_argument("--eval-chars", type=int, help="held-out characters for bpc (default 65536; quick 4000)")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the char-lm accuracy part (speed only)")
    parser.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (ATen and fastc's generated kernels); default: leave as is")
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sparsities = args.sparsities or ([0.5] if args.quick else [0.25, 0.5])
    rounds = args.rounds or (5 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 20)
    eval_chars = args.eval_chars or (4000 if args.quick else None)
    started, load_before = time.time(), load()
    result = {"quick": args.quick, "machine": machine(), "argv": sys.argv[1:], "sparsities": sparsities,
              "rounds": rounds, "calls": args.calls, "warmup": warmup,
              "speed": speed(sparsities, rounds, args.calls, warmup)}
    if not args.no_accuracy:
        result["eval_chars"] = eval_chars or 65536
        result["accuracy"] = accuracy(sparsities, eval_chars)
    result.update(load_before=load_before, load_after=load(), seconds=round(time.time() - started))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prune-channels.json").write_text(json.dumps(result, indent=2))
    write_markdown(result, out / "prune-channels.md")
    if "accuracy" in result:
        plot(result, sparsities, out / "prune-channels.png")
    print((out / "prune-channels.md").read_text())


def write_markdown(r: dict, path: Path) -> None:
    sp, s = r["speed"], r["sparsities"]
    loaded = max((r["load_before"] or [0])[:1] + (r["load_after"] or [0])[:1]) > 1.5
    command = ".venv/bin/python bench/prune_channels.py" + "".join(f" {a}" for a in r["argv"])
    lines = ["# prune-channels: speed on the CPU target, accuracy on the char LM", ""]
    if r["quick"]:
        lines += ["> **Quick validation run on a loaded machine; not the final numbers.** "
                  "Regenerate with `.venv/bin/python bench/prune_channels.py` on a quiet machine.", ""]
    lines += [f"Machine: {r['machine']}. Load average {', '.join(map(str, r['load_before']))} at start, "
              f"{', '.join(map(str, r['load_after']))} at the end. Run took {r['seconds']} s.", "",
              f"Reproduce: `{command}` (writes this file, prune-channels.json and, with the accuracy part, "
              "prune-channels.png; method in the script's docstring).", ""]
    if loaded:
        lines += ["**Load note**: other jobs were running on the machine (1-minute load average above 1.5); "
                  "times are noisier than on an idle machine. The ratios come from interleaved rounds in one process."
                  + (" With more than one thread on a loaded machine, every parallel region waits at its barrier for "
                     "a descheduled thread; compiled graphs run many small kernels (each a parallel region), so their "
                     "times inflate with the number of kernels rather than the work, and ratios against eager or "
                     "between variants with different kernel counts are unreliable: on a shared machine use --threads 1."
                     if "torch.get_num_threads() = 1," not in r["machine"] else ""), ""]
    lines += ["## Speed: FFN-heavy transformer, target cpu", "",
              "Random weights, d=256, ffn=2048, 4 layers, 4 heads, GELU MLP, batch 1 x 64 tokens, no_grad. "
              f"{r['rounds']} interleaved rounds of {r['calls']} calls per variant after {r['warmup']} warm-up calls, "
              "median ms per call. Every variant was compiled once (its own code object and model copy) and nothing "
              "was recompiled while timing (checked); the unpruned variant's output matches eager.", "",
              f"**Baseline**: fastc without lossy passes {sp['ms']['fastc']:.2f} ms per call "
              f"(eager PyTorch {sp['eager_ms']:.2f} ms, timed separately in the same process).", "",
              "| variant | ms per call | speed-up vs fastc | weight bytes | output rel. error vs unpruned |",
              "|---|---|---|---|---|",
              f"| fastc, no lossy pass | {sp['ms']['fastc']:.2f} | 1.00x | | 0 |"]
    for x in s:
        name = f"pruned {x:g}"
        c = sp["checks"][name]
        lines.append(f"| prune-channels{{sparsity={x:g}}} | {sp['ms'][name]:.2f} | {sp['speedup'][name]:.2f}x | "
                     f"{c['weight_bytes'][0]:,} -> {c['weight_bytes'][1]:,} | {c['relative_error_vs_unpruned']:.3f} |")
    lines += ["", "Kernel choices (fastc measures ATen against generated code per kernel at the first call; "
              "measured choices under load can differ between variants): "
              + "; ".join(f"{name} {c['kernel_choices']['aten']} ATen / {c['kernel_choices']['generated']} generated"
                          for name, c in sp["checks"].items()) + "."]
    if "accuracy" in r:
        acc = r["accuracy"]
        lines += ["", "## Accuracy: trained char-lm, bits per character (lower is better)", "",
                  f"fastc_eval.measure on the first {r['eval_chars']:,} held-out characters; unpruned: {acc['none']:.4f}.",
                  "", "| sparsity | wanda | magnitude | wanda + refit |", "|---|---|---|---|"]
        for x in s:
            lines.append(f"| {x:g} | {acc[f'wanda {x:g}']:.4f} | {acc[f'magnitude {x:g}']:.4f} | "
                         f"{acc[f'wanda+refit {x:g}']:.4f} |")
        lines += ["", "![bpc against speed-up](prune-channels.png)"]
    lines.append("")
    path.write_text("\n".join(lines))


def plot(result: dict, sparsities: list[float], path: Path) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot")
        return
    fig, ax = plt.subplots(figsize=(5, 3.5))
    acc, up = result["accuracy"], result["speed"]["speedup"]
    ax.scatter([1.0], [acc["none"]], color="black", label="fastc, no pruning")
    for label, marker in (("wanda", "o"), ("magnitude", "x"), ("wanda+refit", "^")):
        xs = [up[f"pruned {s:g}"] for s in sparsities]
        ys = [acc[f"{label} {s:g}"] for s in sparsities]
        ax.plot(xs, ys, marker=marker, label=label)
    ax.set_xlabel("speed-up on target cpu (FFN-heavy transformer)")
    ax.set_ylabel("char-lm bits per character (lower is better)")
    if result["quick"]:
        ax.set_title("quick validation run (not the final numbers)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
