"""Where fastc's CPU time per forward goes, per model: `fastc explain --profile`, plus each kernel
timed alone (unprofiled) against its own ATen ops.

    python bench/cpu_profile.py [--models char-lm gpt ...] [--batch 8] [--json out.json]

Per model: the profile (fastc.profiling: time per kernel, per ATen op outside kernels, and the
overhead between them, under torch.profiler, against eager), then without a profiler:

- forward: the compiled model's call; runner: the graph's own code (kernels, ATen ops, Python
  between them); outside = forward - runner (Dynamo's guards, aot_autograd's wrappers, the
  frozen-weights check);
- per planned kernel, called alone with the inputs it gets in the model: as it runs in the model
  (`call`), its ATen ops (`aten`), its native code under the same schedule through the Python
  path (`native`: layout checks, output allocation, argument packing, the ctypes call) and the
  machine code alone (`raw`: the ctypes call on arguments packed once).

Times alone are the minimum over batches of the mean of a batch (robust to another process taking
a core meanwhile); the profile's are described in fastc/profiling.py.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch

from fastc.codegen import wrapper
from fastc.costmodel import ATEN
from fastc.profiling import compile_model, profile_compiled
from fastc.report import REPORTS

MODELS = ["cnn", "gpt", "digits-cnn", "digits-vit", "char-lm",
          "gpt2", "llama", "bert", "vit", "resnet", "convnext", "mobilenet_v2"]


def best_us(fn, budget_ms: float = 30.0, batches: int = 7) -> float:
    """Min over `batches` batches of the mean time of a call (us), each batch about
    budget_ms / batches long."""
    return best_us_interleaved({"fn": fn}, budget_ms, batches)["fn"]


def best_us_interleaved(fns: dict, budget_ms: float = 30.0, batches: int = 7) -> dict:
    """best_us of each of `fns`, their batches interleaved (so all see the same machine load)."""
    sizes = {}
    for name, fn in fns.items():
        fn()
        start = time.perf_counter()
        fn()
        once = max(time.perf_counter() - start, 1e-7)
        sizes[name] = max(1, int(budget_ms / 1e3 / batches / once))
    best = {name: float("inf") for name in fns}
    for _ in range(batches):
        for name, fn in fns.items():
            n = sizes[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            best[name] = min(best[name], (time.perf_counter() - start) / n)
    return {name: t * 1e6 for name, t in best.items()}


def _captured(compiled, inputs):
    """{_KernelCall: its inputs}, {_Runner: its arguments} from one forward."""
    kernels, runners = {}, {}
    call_k, call_r = wrapper._KernelCall.__call__, wrapper._Runner.__call__

    def record_k(self, *args):
        kernels.setdefault(self, args)
        return call_k(self, *args)

    def record_r(self, *args):
        runners.setdefault(self, args)
        return call_r(self, *args)
    wrapper._KernelCall.__call__, wrapper._Runner.__call__ = record_k, record_r
    try:
        compiled(**inputs)
    finally:
        wrapper._KernelCall.__call__, wrapper._Runner.__call__ = call_k, call_r
    return kernels, runners


def kernel_times(call, inputs) -> dict:
    """One planned kernel alone: as it runs, as ATen, as native code (Python path, machine code)."""
    from fastc.codegen.cpu.native_kernel import _in_layout
    fns = {"call": lambda: call(*inputs), "aten": lambda: call.aten(inputs)}
    keep, error = [], None
    g = call.runner.generated.get(call.kernel.id)
    decided = call.decided.get(None)
    if g is not None and hasattr(g, "bound"):
        try:
            schedule = decided if decided not in (None, ATEN) else g.default_schedule(g.problem_sizes())
            bound = g.bound(schedule)
            if bound is not None:
                values = [_in_layout(p, x) if p.kind == "tensor" else x for p, x in zip(g.params, inputs)]
                # A second argument array, packed once, pointing at `values` and outputs kept here.
                from fastc.codegen.cpu.runtime import Arguments
                packed_args = Arguments(g.arguments.layout)
                outs = bound(*values)
                keep += [values, outs]
                entry = g.entry(schedule)
                packed_args.call(lambda packed: None, values + list(outs))
                _, packed = packed_args._buffers()
                fns["native"] = lambda: bound(*values)
                fns["raw"] = lambda: entry(packed)
        except Exception as e:  # noqa: BLE001 - a measurement, not a model: say why
            error = f"{type(e).__name__}: {e}"[:200]
    out = best_us_interleaved(fns)
    if error:
        out["error"] = error
    return out


def profile_one(name: str, batch: int, calls: int, rounds: int) -> dict:
    model, compiled, inputs, first = compile_model(name, "cpu", batch)
    profile = profile_compiled(name, model, compiled, inputs, first, batch=batch, calls=calls, rounds=rounds)
    reports = REPORTS[first:]
    labels = {f"g{r.graph_id}" for r in reports}
    with torch.no_grad():
        kernels, runners = _captured(compiled, inputs)
        mine = [(r, args) for r, args in runners.items() if r.label in labels]
        alone = best_us_interleaved({"eager": lambda: model(**inputs), "forward": lambda: compiled(**inputs),
                                     "runner": lambda: [r(*args) for r, args in mine]}, budget_ms=600, batches=10)
        per_kernel = {}
        for call, args in kernels.items():
            if call.runner.label in labels:
                per_kernel[wrapper.range_name(call.runner.label, call.kernel.name)] = kernel_times(call, args)
    return {"profile": profile.to_dict(), "text": profile.text(), "alone": alone, "kernels": per_kernel,
            "threads": torch.get_num_threads()}


def summary(name: str, result: dict) -> str:
    p, alone, ks = result["profile"], result["alone"], result["kernels"]
    kinds = {k["range"]: k["kind"] for k in p["kernels"]}
    native = {r: t for r, t in ks.items() if kinds.get(r) == "native"}
    aten_run = {r: t for r, t in ks.items() if kinds.get(r) == "ATen"}
    kernels_us = sum(t["call"] for t in ks.values())
    raw = sum(t.get("raw", 0.0) for t in native.values())
    native_call = sum(t["call"] for t in native.values())
    lines = [f"{name}: eager {alone['eager'] / 1e3:.3f} ms, fastc {alone['forward'] / 1e3:.3f} ms "
             f"({alone['forward'] / alone['eager']:.2f}x); outside the graph {(alone['forward'] - alone['runner']) / 1e3:.3f} ms; "
             f"{len(ks)} kernels alone {kernels_us / 1e3:.3f} ms ({len(native)} native: {native_call / 1e3:.3f} ms, "
             f"of it machine code {raw / 1e3:.3f} ms; {len(aten_run)} as ATen: "
             f"{sum(t['call'] for t in aten_run.values()) / 1e3:.3f} ms); rest of the runner "
             f"(ATen ops outside kernels + Python between) {(alone['runner'] - kernels_us) / 1e3:.3f} ms"]
    slower = [(r, t) for r, t in ks.items() if "native" in t and t["native"] > t["aten"]]
    raw_slower = [(r, t) for r, t in ks.items() if "raw" in t and t["raw"] > t["aten"]]
    lines.append(f"  native (Python path) slower than ATen: {len(slower)} of {sum('native' in t for t in ks.values())}; "
                 f"machine code alone slower than ATen: {len(raw_slower)}")
    for r, t in sorted(ks.items(), key=lambda rt: -rt[1]["call"])[:8]:
        lines.append(f"  {r:<28} {kinds.get(r, '?'):<7} call {t['call']:8.1f} us  aten {t['aten']:8.1f}  "
                     + (f"native {t['native']:8.1f}  raw {t['raw']:8.1f}" if "raw" in t else t.get("error", "")))
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--json", help="write every result here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    print(f"load average before: {os.getloadavg()}", flush=True)
    for name in args.models:
        load = os.getloadavg()[0]
        results[name] = profile_one(name, args.batch, args.calls, args.rounds)
        results[name]["load"] = (load, os.getloadavg()[0])
        print(results[name]["text"], "\n", flush=True)
        print(summary(name, results[name]), "\n", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
