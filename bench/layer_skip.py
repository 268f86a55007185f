"""What layer-skip costs and buys on the trained char LM, against dropping the last k blocks.

    .venv/bin/python bench/layer_skip.py                 # full run: k = 1 .. n/2, 15 rounds (writes docs)
    .venv/bin/python bench/layer_skip.py --quick         # k = 1 and n/2, 5 rounds, 4,000 eval chars

For each k (--ks, default 1 .. n_layers // 2):

  influence   torch.compile(backend="fastc", options={"target": "cpu", "lossy":
              "layer-skip{max_fraction=(k+0.5)/n,score=influence}", "calibration": 8 training
              windows (4 score the blocks, 4 held out), "accuracy_budget": None}): the k least
              influential blocks (Block Influence on the calibration windows) go
  loss        the same with score=loss and accuracy_metric = minus the bpc on validation text
              (the last --metric-chars characters of the held-out split, never read by the
              reported bpc): blocks picked greedily by measured loss
  last-k      the naive baseline: the last k blocks replaced by identity in a copy of the model,
              compiled by fastc (target cpu) with no lossy pass

and "fastc": the full model compiled by fastc (target cpu) with no lossy pass, the speed baseline.
Then two runs within a 1% budget (layer-skip{score=loss,max_fraction=0.5}): the validation bpc
may rise by 1% of the full model's, and top-1 agreement with the full model (the default metric,
on the held-out calibration windows) may fall by 0.01.

and "fastc": the full model compiled by fastc (target cpu) with no lossy pass, the speed baseline.

Accuracy: bits per character on held-out text (fastc_eval's char-lm metric, the first --eval-chars
characters) of the eager model with the same blocks replaced by identity. Before any timing, each
compiled variant's output on the timing window is checked against that eager model
(torch.testing.assert_close), so the graph layer-skip built is the skipped model.

Speed: ms per call (batch 1, 128 tokens, under torch.no_grad) of each compiled variant. Every
variant is its own model copy behind a forward with a code object of its own, compiled once:
Dynamo caches compiled code per code object, so variants sharing CharLM.forward would share one
cache (each variant's guards fail for the others: recompiles, the recompile limit, eager
fallback). After compiling and --warmup calls each (fastc times kernel choices on first calls),
the variants are timed in --rounds interleaved rounds (the order rotates every round; per round
and variant one untimed call, then --calls timed calls, averaged); the medians over rounds are
reported. During the timing torch._dynamo.config.error_on_recompile is on, and the script checks
that Dynamo compiled no frame and fastc no graph, and no call ran an unfrozen (weights changed)
variant. The machine, its load before and after and the run time are written with the results.

Writes <out>/layer-skip.md, <out>/layer-skip.json and <out>/layer-skip.png.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch
import torch._dynamo
from torch import nn
from torch._dynamo.utils import counters

import fastc
from fastc_eval import zoo
from fastc_eval.data import stdlib_corpus

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bcq_cpu_speed import machine  # noqa: E402  (one description of the machine for every bench)


def load() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


class Skip(nn.Module):
    """A block replaced by identity (the LM's blocks take the rotary tables too)."""

    def forward(self, x, *rest):
        return x


def skipped(model: nn.Module, blocks: list[int]) -> nn.Module:
    out = copy.deepcopy(model)
    for i in blocks:
        out.blocks[i] = Skip()
    return out


def dynamo_state() -> dict:
    """What Dynamo and fastc have compiled so far (to check that the timing compiles nothing)."""
    return {"frames": counters["frames"]["total"], "graphs": counters["stats"]["unique_graphs"],
            "recompiles": sum(counters["recompiles"].values()), "fastc_graphs": len(fastc.reports())}


def compile_variant(name: str, model: nn.Module, x: torch.Tensor, **options):
    """`model` compiled by fastc behind a forward of its own (a new code object: its own Dynamo
    cache), called once on x. Checks that this made exactly one Dynamo frame, one graph and one
    fastc graph without fallback. Returns (compiled, its GraphReport)."""
    def forward(self, tokens):
        return self.inner(tokens)
    tag = "".join(c if c.isalnum() else "_" for c in name)
    code = forward.__code__.replace(co_name=f"forward_{tag}")
    cls = type(f"Variant_{tag}", (nn.Module,), {"forward": types.FunctionType(code, forward.__globals__, code.co_name)})
    variant = cls()
    variant.inner = model
    variant.train(model.training)  # (an eval helper that restores the wrapper's mode restores the model's)
    fn = torch.compile(variant, backend="fastc", options={"target": "cpu", "on_error": "raise", **options})
    before = dynamo_state()
    with torch.no_grad():
        fn(x)
    after = dynamo_state()
    grew = {k: after[k] - before[k] for k in before}
    assert grew == {"frames": 1, "graphs": 1, "recompiles": 0, "fastc_graphs": 1}, (name, grew)
    report = fastc.reports()[-1]
    assert report.kind == "inference" and report.fallback is None, (name, report.text())
    return fn, report


def kernel_choices(report) -> dict:
    """How the kernels measured at the first call went (fastc's default kernel_choice="measure"
    times ATen against generated code per kernel, on this machine, at that moment)."""
    chosen = [m["candidate"] for m in report.measurements if m.get("chosen")]
    aten = sum(1 for c in chosen if c == "aten")
    return {"measured": len(chosen), "aten": aten, "generated": len(chosen) - aten}


def check_output(name: str, fn, reference: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        got, want = fn(x), reference(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, msg=lambda m: f"{name}: compiled != eager\n{m}")
    return (got - want).abs().max().item()


def timed_rounds(variants: dict, x: torch.Tensor, rounds: int, calls: int, warmup: int) -> dict:
    """{name: [ms per call, one per round]}: rounds interleave the variants (rotating order)."""
    names = list(variants)
    times = {name: [] for name in names}
    with torch.no_grad(), torch._dynamo.config.patch(error_on_recompile=True):
        for fn in variants.values():
            for _ in range(warmup):
                fn(x)
        before = dynamo_state()
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                fn = variants[name]
                fn(x)  # untimed: this variant's weights and code back in cache
                start = time.perf_counter()
                for _ in range(calls):
                    fn(x)
                times[name].append((time.perf_counter() - start) * 1e3 / calls)
        after = dynamo_state()
    assert after == before, f"something was compiled while timing: {before} -> {after}"
    changed = [r.graph_id for r in fastc.reports() if r.weights_changed]
    assert not changed, f"graphs {changed} ran their unfrozen variant (weights changed)"
    return times


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="a validation run: k = 1 and n/2 only, 5 rounds, 3 warm-up calls, 4,000 eval chars "
                         "(the files are marked as such)")
    ap.add_argument("--ks", type=int, nargs="+", help="the k to run (default 1 .. n_layers // 2)")
    ap.add_argument("--eval-chars", type=int, help="held-out characters for bpc (default 20000; quick 4000)")
    ap.add_argument("--metric-chars", type=int, default=8192,
                    help="validation characters (the end of the held-out split) the budget's metric reads")
    ap.add_argument("--rounds", type=int, help="interleaved timing rounds (default 15; quick 5)")
    ap.add_argument("--calls", type=int, default=5, help="timed calls per variant per round (averaged)")
    ap.add_argument("--warmup", type=int, help="untimed calls per variant before the rounds (default 20; quick 3)")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch.set_num_threads (ATen and fastc's generated kernels); default: leave as is")
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks"))
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rounds = args.rounds or (5 if args.quick else 15)
    warmup = args.warmup if args.warmup is not None else (3 if args.quick else 20)
    eval_chars = args.eval_chars or (4000 if args.quick else 20000)
    started, load_before = time.time(), load()
    torch.manual_seed(0)
    spec = zoo.reference("char-lm")
    model = zoo.load("char-lm").eval()
    n = len(model.blocks)
    ks = args.ks or ([1, n // 2] if args.quick else list(range(1, n // 2 + 1)))
    windows = spec.calibration(model, 9)
    calibration = [(windows[i:i + 1],) for i in range(8)]
    x = windows[8:9]

    def bpc(m):
        return zoo.char_lm_metrics(m, eval_chars)["bpc"]

    # The budget's metric: minus bpc on validation text that the reported bpc never reads (the
    # last --metric-chars characters of the held-out split; the report reads its first
    # --eval-chars), one 128-token window per call as the compiled graph has static shapes.
    val = zoo.corpus_tokens()[1]
    metric_windows = stdlib_corpus.eval_windows(val[-args.metric_chars:], windows.shape[1], args.metric_chars)

    def minus_validation_bpc(m):
        return -zoo.lm_metrics(m, metric_windows, batch=1)["bpc"]

    variants, blocks, max_err, choices = {}, {}, {}, {}

    def add(name: str, chosen_from, **options) -> list[str]:
        """Compiles a variant, checks it against the eager model with its blocks skipped; returns
        the lossy pass's rewrites (empty for variants without one)."""
        fn, report = compile_variant(name, copy.deepcopy(model if chosen_from is None else skipped(model, chosen_from)),
                                     x, **options)
        rewritten = report.lossy[0].rewritten if report.lossy else []
        chosen = chosen_from if chosen_from is not None else \
            sorted(int(w.split(" ")[0].rsplit(".", 1)[1]) for w in rewritten)
        max_err[name] = check_output(name, fn, skipped(model, chosen), x)
        choices[name], variants[name], blocks[name] = kernel_choices(report), fn, chosen
        return rewritten

    add("fastc", [])
    rows = []
    for k in ks:
        fraction = (k + 0.5) / n  # floor(fraction * n) = k
        row = {"k": k}
        for method, extra in (("influence", {}), ("loss", {"accuracy_metric": minus_validation_bpc})):
            name = f"{method} k={k}"
            rewritten = add(name, None, lossy=f"layer-skip{{max_fraction={fraction:.4f},score={method}}}",
                            calibration=calibration, accuracy_budget=None, **extra)
            assert len(blocks[name]) == k, (name, rewritten)
            row[f"{method}_blocks"], row[f"{method}_bpc"] = blocks[name], bpc(skipped(model, blocks[name]))
            row[f"{method}_proposals"] = [w.removeprefix("inner.") for w in rewritten]
        last = list(range(n - k, n))
        add(f"last-k k={k}", last)
        row["last_k_blocks"], row["last_k_bpc"] = last, bpc(skipped(model, last))
        rows.append(row)
        print(f"k={k}: influence {row['influence_blocks']}, loss {row['loss_blocks']}, last-k {last} "
              f"compiled and checked ({time.time() - started:.0f} s)", flush=True)
    # Within a 1% budget: the greedy loss search on the validation bpc (1% of the full model's),
    # and the default metric (top-1 agreement with the full model on the held-out calibration
    # windows) with a budget of 0.01.
    full_val_bpc = -minus_validation_bpc(model)
    budgets = []
    for name, metric, budget in (("budget bpc+1%", minus_validation_bpc, 0.01 * full_val_bpc),
                                 ("budget agreement-1%", "agreement", 0.01)):
        before = len(fastc.reports())
        rewritten = add(name, None, lossy=f"layer-skip{{max_fraction=0.5,score=loss}}", calibration=calibration,
                        accuracy_metric=metric, accuracy_budget=budget)
        (record,) = fastc.reports()[before].lossy
        budgets.append({"name": name, "budget": budget, "blocks": blocks[name], "loss": record.loss,
                        "kept": rewritten, "left_out": record.left_out, "bpc": bpc(skipped(model, blocks[name]))})
        print(f"{name}: removed {blocks[name]} (loss {record.loss:.4g}, budget {budget:.4g})", flush=True)
    with torch.no_grad():
        eager = {"eager": lambda t: model(t)}
        eager_ms = statistics.median(timed_rounds(eager, x, max(3, rounds // 3), args.calls, warmup)["eager"])
    times = timed_rounds(variants, x, rounds, args.calls, warmup)
    print(f"timed ({time.time() - started:.0f} s)", flush=True)
    ms = {name: statistics.median(t) for name, t in times.items()}
    spread = {name: [round(min(t), 3), round(max(t), 3)] for name, t in times.items()}
    for row in rows:
        for method in ("influence", "loss", "last_k"):
            row[f"{method}_speedup"] = ms["fastc"] / ms[f"{method.replace('_', '-')} k={row['k']}"]
    for b in budgets:
        b["speedup"] = ms["fastc"] / ms[b["name"]]
    results = {"quick": args.quick, "machine": machine(), "load_before": load_before, "load_after": load(),
               "seconds": round(time.time() - started), "argv": sys.argv[1:], "n_layers": n,
               "eval_chars": eval_chars, "rounds": rounds, "calls": args.calls, "warmup": warmup,
               "baseline_bpc": bpc(model), "eager_ms": eager_ms, "ms": ms, "ms_min_max": spread,
               "max_abs_error_vs_eager": max_err, "kernel_choices": choices, "rows": rows,
               "validation_bpc": full_val_bpc, "metric_chars": args.metric_chars, "budgets": budgets}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "layer-skip.json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out / "layer-skip.md")
    plot(results, out / "layer-skip.png")
    print((out / "layer-skip.md").read_text())


def write_markdown(r: dict, path: Path):
    loaded = max((r["load_before"] or [0])[:1] + (r["load_after"] or [0])[:1]) > 1.5
    command = ".venv/bin/python bench/layer_skip.py" + "".join(f" {a}" for a in r["argv"])
    lines = ["# layer-skip on the char LM: accuracy against speed-up", ""]
    if r["quick"]:
        lines += ["> **Quick validation run on a loaded machine; not the final numbers.** "
                  "Regenerate with `.venv/bin/python bench/layer_skip.py` on a quiet machine.", ""]
    lines += [
        f"Machine: {r['machine']}. Load average {', '.join(map(str, r['load_before']))} at start, "
        f"{', '.join(map(str, r['load_after']))} at the end. Run took {r['seconds']} s.",
        "",
        f"Reproduce: `{command}` (writes this file, layer-skip.json and layer-skip.png; method in the "
        "script's docstring).",
        "",
    ]
    if loaded:
        lines += ["**Load note**: other jobs were running on the machine (1-minute load average above 1.5); "
                  "times are noisier than on an idle machine. The ratios come from interleaved rounds in one process."
                  + (" With more than one thread on a loaded machine, every parallel region waits at its barrier for "
                     "a descheduled thread; compiled graphs run many small kernels (each a parallel region), so their "
                     "times inflate with the number of kernels rather than the work, and ratios against eager or "
                     "between variants with different kernel counts are unreliable: on a shared machine use --threads 1."
                     if "torch.get_num_threads() = 1," not in r["machine"] else ""), ""]
    lines += [
        f"Trained char-lm ({r['n_layers']} layers), bits per character on the first {r['eval_chars']:,} held-out "
        f"characters (lower is better; the full model: {r['baseline_bpc']:.4f}), of the eager model with the "
        "blocks replaced by identity; each compiled variant's output was checked against it before timing.",
        "",
        f"Speed: fastc target cpu, batch 1 x 128 tokens, no_grad; {r['rounds']} interleaved rounds of {r['calls']} "
        f"calls per variant after {r['warmup']} warm-up calls, median ms per call. Every variant was compiled once "
        "(its own code object and model copy) and nothing was recompiled while timing (checked).",
        "",
        f"**Baseline**: fastc without lossy passes {r['ms']['fastc']:.2f} ms per call "
        f"(eager PyTorch {r['eager_ms']:.2f} ms, timed separately in the same process).",
        "",
        "| k | influence: blocks | bpc | speed-up | loss (greedy): blocks | bpc | speed-up "
        "| last k: blocks | bpc | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["rows"]:
        lines.append(f"| {row['k']} | " + " | ".join(
            f"{row[f'{m}_blocks']} | {row[f'{m}_bpc']:.4f} | {row[f'{m}_speedup']:.2f}x"
            for m in ("influence", "loss", "last_k")) + " |")
    lines += ["", "ms per call: " + ", ".join(f"{name} {v:.2f}" for name, v in r["ms"].items()) + ".", "",
              f"**Within a 1% budget** (layer-skip{{score=loss,max_fraction=0.5}}; the full model's validation "
              f"bpc {r['validation_bpc']:.4f} on the last {r['metric_chars']:,} held-out characters):", "",
              "| metric, budget | blocks removed | loss | bpc (eval) | speed-up |", "|---|---|---|---|---|"]
    for b in r["budgets"]:
        lines.append(f"| {b['name']} ({b['budget']:.4g}) | {b['blocks'] or 'none'} | {b['loss']:.4g} | "
                     f"{b['bpc']:.4f} | {b['speedup']:.2f}x |")
    lines += ["", "Kernel choices (fastc measures ATen against generated code per kernel at the first call; "
              "measured choices under load can differ between variants): "
              + "; ".join(f"{name} {c['aten']} ATen / {c['generated']} generated" for name, c in r["kernel_choices"].items())
              + "."]
    lines += ["", f"Removing k of {r['n_layers']} blocks removes at most k/{r['n_layers']} of the work "
              "(the embedding, final norm and head stay), so the speed-up should be at most about "
              f"{r['n_layers']}/({r['n_layers']}-k); at equal k both variants run the same amount of work.",
              "", "layer-skip's proposals (least costly first; loss: minus the validation bpc, the loss of removing "
              "the block with those before it):", ""]
    lines += [f"- k={row['k']}, {m}: " + "; ".join(row[f"{m}_proposals"]) for row in r["rows"] for m in ("influence", "loss")]
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
    for key, label in (("influence", "layer-skip, Block Influence"), ("loss", "layer-skip, measured loss (greedy)"),
                       ("last_k", "drop the last k blocks")):
        xs = [1.0] + [row[f"{key}_speedup"] for row in r["rows"]]
        ys = [r["baseline_bpc"]] + [row[f"{key}_bpc"] for row in r["rows"]]
        ax.plot(xs, ys, marker="o", label=label)
        for row in r["rows"]:
            ax.annotate(f"k={row['k']}", (row[f"{key}_speedup"], row[f"{key}_bpc"]), fontsize=7)
    ax.set_xlabel("speed-up over fastc without lossy passes (target cpu)")
    ax.set_ylabel("bits per character (held-out)")
    ax.set_title("char LM: layer-skip vs dropping the last k blocks" + (" (quick run)" if r["quick"] else ""))
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
