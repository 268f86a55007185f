"""`fastc demo`: compile the bundled models with fastc, check them against eager, time both."""
from __future__ import annotations

import statistics
import time

import torch

from fastc.costmodel import machine
from fastc_eval import zoo

from .report import REPORTS


def _median_ms(fn, inputs: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn(**inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def run_demo(names: list[str], runs: int = 20) -> int:
    """Compiles, checks and times each bundled model in `names`; `runs` timed calls each (>= 1)."""
    if runs < 1:
        raise ValueError(f"runs must be at least 1 (a median of {runs} timings does not exist), got {runs}")
    unknown = [n for n in names if n not in zoo.DEMO]
    if unknown:
        raise ValueError(f"unknown demo model {unknown[0]!r} (valid: {', '.join(zoo.DEMO)})")
    print(f"fastc demo on {machine.describe()}\n")
    failures = 0
    rows = []
    for name in names:
        model, inputs = zoo.build(name)
        torch._dynamo.reset()
        first_report = len(REPORTS)
        compiled = torch.compile(model, backend="fastc")
        with torch.no_grad():
            expected = model(**inputs)
            start = time.perf_counter()
            actual = compiled(**inputs)
            compile_s = time.perf_counter() - start
            err = (actual - expected).abs().max().item()
            ok = torch.allclose(actual, expected, rtol=1e-4, atol=1e-4)
            failures += not ok
            for _ in range(3):
                model(**inputs), compiled(**inputs)
            # Interleaved, so that both see the same machine load.
            eager_ms, fastc_ms = [], []
            for _ in range(runs):
                eager_ms.append(_median_ms(model, inputs, 1))
                fastc_ms.append(_median_ms(compiled, inputs, 1))
        e, f = statistics.median(eager_ms), statistics.median(fastc_ms)
        shapes = ", ".join(str(tuple(x.shape)) for x in inputs.values())
        print(f"== {name}: {type(model).__name__}, input {shapes}")
        for report in REPORTS[first_report:]:
            print(report.text())
        print(f"max |fastc - eager| = {err:.2e}  ({'OK' if ok else 'MISMATCH'})")
        print(f"compile {compile_s:.2f} s; eager {e:.2f} ms, fastc {f:.2f} ms per call "
              f"(speed-up x{e / f:.2f}, median of {runs})\n")
        rows.append((name, err, ok, compile_s, e, f))
    print("model  max-error  correct  compile-s  eager-ms  fastc-ms  speed-up")
    for name, err, ok, c, e, f in rows:
        print(f"{name:<6} {err:9.2e}  {'yes' if ok else 'NO':>7}  {c:9.2f}  {e:8.2f}  {f:8.2f}  x{e / f:.2f}")
    print("\nOn CPU, fastc's kernels are native code (torch-mlir -> linalg -> LLVM); each runs as generated "
          "code or as its ATen ops, whichever measured faster on its first call. Matrix products and "
          "convolutions stay ATen calls (oneDNN/MKL). Timings are on this machine: "
          f"{machine.describe()}.")
    return 1 if failures else 0
