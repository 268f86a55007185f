"""End to end: the learned cost model's choices against measuring every candidate, per model.

For each model (fastc_eval.zoo names) four ways of running it, in one process:

- eager PyTorch;
- `exhaustive`: mode="max-autotune", tuning="measure": every candidate of every native kernel
  (ATen, and the whole CPU schedule space) measured at its first call, the fastest kept;
- `model`: tuning="model": the cost model ranks the same candidates and measures only where it
  is unsure (its top-k);
- `default-measure`: tuning="measure" without max-autotune (today's default before the model:
  ATen or the kernel's code as lowered, one thread or many, measured).

Steady state: interleaved rounds (each round times every variant once, `--runs` calls each),
median per variant. First call: wall time of the first call after compiling (where every
measurement happens). Writes JSON (--json) and prints a Markdown table.

    python bench/costmodel_end_to_end.py --models gpt cnn --batch 8 --rounds 15 --json out.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

import fastc  # noqa: F401 - registers the backend
from fastc.costmodel.machine import describe


def build(name: str, batch: int):
    from fastc_eval import zoo
    model, inputs = zoo.build(name, batch=batch)
    model.eval()
    keys = list(inputs)

    def call(fn):
        return lambda: fn(**{k: inputs[k] for k in keys})
    return model, call


def variants(model, chooser) -> dict:
    options = {
        "exhaustive": {"target": "cpu", "mode": "max-autotune", "tuning": "measure"},
        "model": {"target": "cpu", "choices": chooser},   # what tuning="model" makes, kept to read its stats
        "default-measure": {"target": "cpu", "tuning": "measure"},
    }
    out = {"eager": model}
    for name, opts in options.items():   # each compiled wrapper keeps its own cache entries
        out[name] = torch.compile(model, backend="fastc", options=opts)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["mlp", "cnn", "gpt", "vit", "convnext"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=5, help="calls per variant per round")
    parser.add_argument("--cost-model", help="model file (default: the shipped one)")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    from fastc.costmodel import ModelChoices
    from fastc.costmodel.default import default_model_path, load_model
    path = args.cost_model or str(default_model_path("cpu"))
    loaded, why = load_model(path, "cpu")
    if loaded is None:
        parser.error(f"no cost model for this machine: {why}")
    results = []
    for name in args.models:
        torch._dynamo.reset()
        chooser = ModelChoices(loaded)
        model, call = build(name, args.batch)
        with torch.no_grad():
            fns = {}
            first = {}
            stats = None
            for variant, fn in variants(model, chooser).items():
                started = time.perf_counter()
                call(fn)()
                first[variant] = time.perf_counter() - started
                fns[variant] = fn
                if variant == "model":
                    stats = dict(chooser.stats)
            times = {v: [] for v in fns}
            for _ in range(args.rounds):
                for variant, fn in fns.items():
                    run = call(fn)
                    started = time.perf_counter()
                    for _ in range(args.runs):
                        run()
                    times[variant].append((time.perf_counter() - started) * 1e3 / args.runs)
        medians = {v: statistics.median(t) for v, t in times.items()}
        row = {"model": name, "batch": args.batch, "ms": medians, "first_call_s": first,
               "model_vs_exhaustive": medians["model"] / medians["exhaustive"], "model_stats": stats}
        results.append(row)
        print(f"{name}: " + ", ".join(f"{v} {m:.3f} ms" for v, m in medians.items())
              + f"; model/exhaustive {row['model_vs_exhaustive']:.3f}", flush=True)
    machine = describe()
    print(f"\nMachine: {machine}\n")
    print("| model | eager ms | exhaustive ms | model ms | default-measure ms | model / exhaustive "
          "| first call: exhaustive s | model s | model measured |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        m, f, s = r["ms"], r["first_call_s"], r["model_stats"] or {}
        print(f"| {r['model']} | {m['eager']:.3f} | {m['exhaustive']:.3f} | {m['model']:.3f} | "
              f"{m['default-measure']:.3f} | {r['model_vs_exhaustive']:.3f} | {f['exhaustive']:.1f} | "
              f"{f['model']:.1f} | {s.get('measured', 0)} of {s.get('kernels', 0)} kernels unsure: {s.get('unsure', 0)} |")
    ratios = [r["model_vs_exhaustive"] for r in results]
    geomean = statistics.geometric_mean(ratios) if ratios else float("nan")
    print(f"\nGeomean model / exhaustive: {geomean:.3f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": machine, "results": results, "geomean_model_vs_exhaustive": geomean}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
