"""Block fusion on whole networks: eager, Inductor, fastc layer by layer (fuse-blocks disabled) and
fastc with its block ops, side by side; writes a markdown table and JSON.

    python bench/block_fusion.py [--models convfirst mobilenet_v2 ...] [--runs 30] [--out docs/benchmarks/block-fusion.md]

One process, every backend compiled once per model, then rounds of one call each in alternating
order (a backend timed right after another runs a few percent faster on this machine), medians.
Ratios are against the same run's times. Each block op's pick (block kernel, oneDNN layers, ATen
layers) comes from fastc's report: which implementation the choices object measured faster.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import os
import statistics
import sys
import tempfile

os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
from compare_backends import _tensors, _time  # noqa: E402

from fastc.costmodel import machine  # noqa: E402
from fastc.report import REPORTS  # noqa: E402
from fastc_eval import zoo  # noqa: E402

MODELS = ["convfirst", "digits-cnn", "mobilenet_v2", "convnext", "gpt2", "llama", "vit", "bert"]
BACKENDS = ["eager", "inductor", "fastc layers", "fastc blocks"]


def _compile(backend: str, model):
    torch._dynamo.reset()
    if backend == "inductor":
        return torch.compile(model)
    os.environ["FASTC_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastc-blocks-")
    options = {"disable": "fuse-blocks"} if backend == "fastc layers" else {}
    return torch.compile(model, backend="fastc", options=options)


def run(names, runs: int, batch: int):
    rows = []
    for name in names:
        model, inputs = zoo.build(name, batch=batch)
        model.eval()
        inputs = tuple(inputs.values())
        print(f"== {name}", flush=True)
        with torch.no_grad():
            expected = _tensors(model(*inputs))
            fns, picks = {"eager": model}, {}
            for backend in BACKENDS[1:]:
                first = len(REPORTS)
                fn = _compile(backend, model)
                out = _tensors(fn(*inputs))
                err = max((o - e).abs().max().item() for o, e in zip(out, expected))
                print(f"   {backend}: max error {err:.1e}", flush=True)
                fns[backend] = fn
                if backend == "fastc blocks":
                    for r in REPORTS[first:]:
                        picks.update({n: p for n, p in r.decisions.items() if n.endswith("_block")})
            times = {b: [] for b in fns}
            order = list(fns.items())
            for fn in fns.values():
                fn(*inputs)
            for r in range(runs):
                for b, fn in (order if r % 2 == 0 else order[::-1]):
                    times[b].append(_time(fn, inputs, "cpu"))
        med = {b: statistics.median(t) for b, t in times.items()}
        rows.append({"model": name, "ms": med, "block_picks": dict(collections.Counter(picks.values()))})
        print("   " + ", ".join(f"{b} {m:.3f} ms" for b, m in med.items()), flush=True)
    return rows


def table(rows, runs: int, batch: int) -> str:
    lines = [f"Machine: {machine.describe()}; {torch.get_num_threads()} threads; batch {batch}; median of {runs} "
             "interleaved rounds, one process. `fastc layers`: fastc with fuse-blocks disabled (each convolution "
             "or product its own oneDNN / ATen call); `fastc blocks`: the default pipeline, each block op running "
             "what the choices object measured fastest (picks in the last column).", "",
             "| model | eager ms | inductor ms | fastc layers ms | fastc blocks ms | blocks / layers | "
             "blocks / inductor | inductor / eager | blocks / eager | block ops ran as |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        m = r["ms"]
        picks = ", ".join(f"{n} {p}" for p, n in sorted(r["block_picks"].items())) or "no block"
        lines.append(f"| {r['model']} | {m['eager']:.2f} | {m['inductor']:.2f} | {m['fastc layers']:.2f} | "
                     f"{m['fastc blocks']:.2f} | {m['fastc blocks'] / m['fastc layers']:.2f} | "
                     f"{m['fastc blocks'] / m['inductor']:.2f} | {m['inductor'] / m['eager']:.2f} | "
                     f"{m['fastc blocks'] / m['eager']:.2f} | {picks} |")

    def geomean(values):
        return math.exp(sum(math.log(v) for v in values) / len(values))
    lines += ["", f"- geomean fastc blocks / fastc layers: "
                  f"{geomean([r['ms']['fastc blocks'] / r['ms']['fastc layers'] for r in rows]):.2f}; "
                  f"fastc blocks / inductor: {geomean([r['ms']['fastc blocks'] / r['ms']['inductor'] for r in rows]):.2f} "
                  "(below 1 is faster)"]
    return "\n".join(lines) + "\n"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--out", help="write the markdown table here (and the rows as JSON beside it)")
    args = parser.parse_args()
    rows = run(args.models, args.runs, args.batch)
    text = table(rows, args.runs, args.batch)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# Block fusion on whole networks (CPU)\n\n" + text)
        with open(os.path.splitext(args.out)[0] + ".json", "w") as f:
            json.dump({"machine": machine.describe(), "batch": args.batch, "runs": args.runs, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
