"""Eager, Inductor and fastc side by side on the model set; writes a markdown table.

    python bench/compare_backends.py [--models cnn gpt digits-cnn ...] [--out docs/benchmarks/x.md]

Rounds alternate the order of the backends. Per model: compile time (first call; cold: Inductor's caches off, fastc's on-disk cache in a
fresh directory; with --warm also a second compile with every cache filled), steady-state time per call (medians of interleaved rounds of calls, so
that all backends see the same machine load; ratios are against eager in the same run), kernel
counts (fastc: planned kernels plus ATen calls outside them; Inductor: generated kernels), and
the bytes fastc's kernels move against the same ops run one by one. On a CUDA machine the same
script times the GPU path (fastc target "triton"); results name the machine.
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import tempfile
import time

# Compile times are for a cold compile: Inductor's on-disk caches would otherwise answer a rerun.
os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")

import torch  # noqa: E402

from fastc.costmodel import machine  # noqa: E402
from fastc.report import REPORTS  # noqa: E402
from fastc_eval import zoo  # noqa: E402


def _models(names, device):
    for name in names:
        model, inputs = zoo.build(name, batch=8)  # inputs in the order of forward's arguments
        yield name, model.eval().to(device), tuple(x.to(device) for x in inputs.values())


def _tensors(out) -> list:
    """The tensors of a model's output (a tensor, a tuple, or a transformers ModelOutput)."""
    if hasattr(out, "to_tuple"):
        out = out.to_tuple()
    return [t for t in torch.utils._pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]


def _time(fn, inputs, device, calls: int = 1):
    """Milliseconds per call over `calls` calls in a row."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn(*inputs)
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3 / calls


# A round times each backend over this many milliseconds of calls at least (a model of 0.4 ms
# runs 8 calls in a row per round): the steady state a loop over inputs sees, with the timer's
# and the machine's jitter spread over several calls.
ROUND_MS = 3.0


def _fastc_counts(reports):
    kernels = sum(len(r.kernels) for r in reports)
    aten = sum(r.unplanned_ops for r in reports)
    fused = sum(r.bytes_fused for r in reports if isinstance(r.bytes_fused, int))
    unfused = sum(r.bytes_unfused for r in reports if isinstance(r.bytes_unfused, int))
    return kernels, aten, fused, unfused


def run(names, runs: int, device: str, with_inductor: bool, warm: bool = False):
    rows = []
    for name, model, inputs in _models(names, device):
        print(f"== {name}", flush=True)
        with torch.no_grad():
            expected = model(*inputs)
            backends = {"eager": model}
            compile_s, counts = {}, {}
            for backend in (["inductor"] if with_inductor else []) + ["fastc"]:
                torch._dynamo.reset()
                if backend == "inductor":
                    from torch._inductor import metrics
                    metrics.reset()
                    torch._inductor.config.force_disable_caches = True
                    fn = torch.compile(model)
                else:
                    first = len(REPORTS)
                    os.environ["FASTC_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastc-cold-")
                    fn = torch.compile(model, backend="fastc")
                start = time.perf_counter()
                out = fn(*inputs)
                compile_s[backend] = time.perf_counter() - start
                err = max(((o.float() - e.float()).abs().max().item() for o, e in zip(_tensors(out), _tensors(expected))),
                          default=0.0)
                print(f"   {backend}: compiled in {compile_s[backend]:.1f} s, max error {err:.1e}", flush=True)
                if backend == "inductor":
                    counts[backend] = metrics.generated_kernel_count
                else:
                    counts[backend] = _fastc_counts(REPORTS[first:])
                backends[backend] = fn
                if warm:  # after the counts: the warm compile makes its own reports and kernels
                    compile_s[backend + " warm"] = _warm_compile(backend, model, inputs)
            times = {b: [] for b in backends}
            for fn in backends.values():
                fn(*inputs)
            calls = max(1, min(50, round(ROUND_MS / min(_time(model, inputs, device) for _ in range(3)))))
            order = list(backends.items())
            for r in range(runs):
                # Each round in the other order: the backend timed right after another runs a few
                # percent faster on this machine (caches), which must favour none.
                for b, fn in (order if r % 2 == 0 else order[::-1]):
                    times[b].append(_time(fn, inputs, device, calls))
        med = {b: statistics.median(t) for b, t in times.items()}
        rows.append((name, med, compile_s, counts))
    return rows


def _warm_compile(backend: str, model, inputs) -> float:
    """Seconds to compile `model` again in this process, everything in the backend's caches: on
    disk (Inductor's FX graph and autotuning caches, fresh, filled by one compile first; fastc's
    lowered modules, filled by the cold compile) and in memory. Dynamo traces again each time."""
    if backend == "inductor":
        torch._inductor.config.force_disable_caches = False
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="inductor-warm-")
        torch._dynamo.reset()
        torch.compile(model)(*inputs)
    torch._dynamo.reset()
    fn = torch.compile(model) if backend == "inductor" else torch.compile(model, backend="fastc")
    start = time.perf_counter()
    fn(*inputs)
    seconds = time.perf_counter() - start
    torch._dynamo.reset()
    return seconds


def table(rows, runs, device, with_inductor) -> str:
    head = ["model", "eager ms"]
    if with_inductor:
        head += ["inductor ms", "inductor / eager", "inductor compile s", "inductor kernels"]
    head += ["fastc ms", "fastc / eager", "fastc compile s", "fastc kernels + ATen calls",
             "fastc bytes moved (ops one by one)"]
    warm = any("fastc warm" in c for _, _, c, _ in rows)
    if warm:
        head += ["warm compile s: fastc", "inductor"] if with_inductor else ["warm compile s: fastc"]
    lines = [f"Machine: {machine.describe()}; device {device}; median of {runs} interleaved rounds, each "
             f"backend's round {ROUND_MS:g} ms or more of calls in a row (at most 50); "
             "ratios are time / eager time in the same run (below 1 is faster).", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, med, compile_s, counts in rows:
        kernels, aten, fused, unfused = counts["fastc"]
        cells = [name, f"{med['eager']:.2f}"]
        if with_inductor:
            cells += [f"{med['inductor']:.2f}", f"{med['inductor'] / med['eager']:.2f}",
                      f"{compile_s['inductor']:.1f}", str(counts["inductor"])]
        cells += [f"{med['fastc']:.2f}", f"{med['fastc'] / med['eager']:.2f}", f"{compile_s['fastc']:.1f}",
                  f"{kernels} + {aten}", f"{fused:,} ({unfused:,})"]
        if warm:
            cells += [f"{compile_s['fastc warm']:.2f}"] + ([f"{compile_s['inductor warm']:.2f}"] if with_inductor else [])
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", *goals(rows, with_inductor)]
    return "\n".join(lines) + "\n"


def goals(rows, with_inductor) -> list[str]:
    """The target's goals, checked on this run: never slower than eager, geomean steady-state at
    least Inductor's, compile time at most a third of Inductor's."""
    def geomean(values):
        return math.exp(sum(math.log(v) for v in values) / len(values))
    fastc = [med["fastc"] / med["eager"] for _, med, _, _ in rows]
    out = [f"- fastc / eager: geomean {geomean(fastc):.2f}, worst {max(fastc):.2f} "
           f"({'never slower than eager' if max(fastc) <= 1.0 else 'slower than eager on ' + ', '.join(n for (n, m, _, _), r in zip(rows, fastc) if r > 1.0)})"]
    if with_inductor:
        inductor = [med["inductor"] / med["eager"] for _, med, _, _ in rows]
        compile_ratio = [c["fastc"] / c["inductor"] for _, _, c, _ in rows]
        out.append(f"- inductor / eager: geomean {geomean(inductor):.2f}; fastc / inductor geomean "
                   f"{geomean(fastc) / geomean(inductor):.2f} (at most 1 is the goal)")
        out.append(f"- compile time fastc / inductor: geomean {geomean(compile_ratio):.2f}, worst "
                   f"{max(compile_ratio):.2f} (at most 0.33 is the goal)")
        if all("fastc warm" in c and "inductor warm" in c for _, _, c, _ in rows):
            warm_ratio = [c["fastc warm"] / c["inductor warm"] for _, _, c, _ in rows]
            out.append(f"- warm compile fastc / inductor: geomean {geomean(warm_ratio):.2f}, worst "
                       f"{max(warm_ratio):.2f} (at most 1 is the goal)")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["cnn", "gpt", "digits-cnn", "digits-vit", "char-lm"])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--no-inductor", action="store_true")
    parser.add_argument("--warm", action="store_true", help="also time a warm compile (caches filled)")
    parser.add_argument("--out", help="write the table to this markdown file too")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    rows = run(args.models, args.runs, device, not args.no_inductor, warm=args.warm)
    text = table(rows, args.runs, device, not args.no_inductor)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# eager vs Inductor vs fastc\n\nWritten by `bench/compare_backends.py`.\n\n" + text)


if __name__ == "__main__":
    main()
