"""The Python cost of calling a static native kernel, and flat against N-D pointwise kernels.

    python bench/cpu_call_path.py [--threads 1] [--rounds 15] [--cases relu-4d gelu-4d ...]

Per case, one small graph compiled for the cpu target (generated code only), its kernel timed
alone, interleaved rounds, medians:

- `bound`: NativeKernel.bound's callable (what a settled kernel runs: layout checks, outputs
  allocated, data pointers written into the argument array filled once per thread);
- `packed`: the same kernel called the way bound did before (every pointer, size and stride
  packed into a Python list at each call, `runtime.Arguments.call`), for comparison;
- `raw`: the machine code alone (the ctypes call on arguments packed once, same outputs);
- `aten`: the kernel's ATen ops;
- for pointwise cases, `nd raw`/`nd bound`: the same kernel compiled with its N-D loop nest (flat
  collapsing turned off: subgraph.flat_numel patched to None).

Python per call = bound - raw (and packed - raw). Times in us.
"""
from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import torch
import torch.nn.functional as F

from fastc.codegen import wrapper
from fastc.codegen.cpu import params as cpu_params
from fastc.codegen.cpu import subgraph
from fastc.codegen.cpu.native_kernel import _in_layout
from fastc.codegen.cpu.runtime import Arguments

OPTIONS = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise"}

CASES = {
    "mul-add (4, 8, 16)": (lambda x, y: x * y + 1, lambda: (torch.randn(4, 8, 16), torch.randn(4, 8, 16))),
    "layer-norm (8, 64, 256)": (lambda x, w, b: F.layer_norm(x, (256,), w, b),
                                lambda: (torch.randn(8, 64, 256), torch.randn(256), torch.randn(256))),
    "layer-norm (8, 16, 64)": (lambda x, w, b: F.layer_norm(x, (64,), w, b),
                               lambda: (torch.randn(8, 16, 64), torch.randn(64), torch.randn(64))),
    "gelu (8, 256, 8, 8)": (F.gelu, lambda: (torch.randn(8, 256, 8, 8),)),
    "relu (8, 32, 16, 16)": (torch.relu, lambda: (torch.randn(8, 32, 16, 16),)),
    "x + 1 (8, 32, 16, 16)": (lambda x: x + 1, lambda: (torch.randn(8, 32, 16, 16),)),
    "add, relu (8, 16, 14, 14)": (lambda x, y: (x + y).relu(), lambda: (torch.randn(8, 16, 14, 14),
                                                                         torch.randn(8, 16, 14, 14))),
}


@contextmanager
def nd_kernels():
    """Compiling inside: pointwise kernels keep their N-D loop nests (no flat collapsing)."""
    saved = subgraph.flat_numel
    subgraph.flat_numel = cpu_params.flat_numel = lambda kernel: None
    try:
        yield
    finally:
        subgraph.flat_numel = cpu_params.flat_numel = saved


def kernel_of(fn, args):
    """(NativeKernel, its schedule, the _KernelCall, its inputs) of the one kernel of fn."""
    torch._dynamo.reset()
    compiled = torch.compile(fn, backend="fastc", options=OPTIONS)
    compiled(*args)
    seen = {}
    call = wrapper._KernelCall.__call__

    def record(self, *inputs):
        seen.setdefault(self, inputs)
        return call(self, *inputs)
    wrapper._KernelCall.__call__ = record
    try:
        compiled(*args)
    finally:
        wrapper._KernelCall.__call__ = call
    (kcall, inputs), = seen.items()
    g = kcall.runner.generated[kcall.kernel.id]
    return g, kcall.decided[None], kcall, inputs


def paths(g, schedule, inputs) -> dict:
    """name -> callable: the kernel's bound call, the old packing path, and its machine code."""
    bound = g.bound(schedule)
    fn = g.entry(schedule)
    shapes = g._output_shapes(None)
    generic = Arguments(g.arguments.layout)

    def packed():  # NativeKernel.bound before the fixed descriptors: checks, allocation, packing
        values = list(inputs)
        for i, p in enumerate(g.params):
            if p.kind == "tensor":
                values[i] = _in_layout(p, values[i])
        outs = tuple(torch.empty(shape, dtype=dtype) if strides is None else
                     torch.empty_strided(shape, strides, dtype=dtype)
                     for (shape, strides), dtype in zip(shapes, g.out_dtypes))
        generic.call(fn, values + list(outs))
        return outs
    outs = bound(*inputs)
    once = Arguments(g.arguments.layout)
    once.call(lambda p: None, list(inputs) + list(outs))
    _, raw_packed = once._buffers()
    keep = (inputs, outs, once)  # the raw call writes into `outs`: alive as long as it is

    def raw():
        fn(raw_packed)
        return keep
    return {"bound": lambda: bound(*inputs), "packed": packed, "raw": raw}


def medians(fns: dict, rounds: int, budget_us: float = 3000.0) -> dict:
    """Median over `rounds` interleaved rounds of each callable's mean time per call (us)."""
    counts = {}
    for name, fn in fns.items():
        fn()
        start = time.perf_counter()
        fn()
        counts[name] = max(1, int(budget_us / 1e6 / max(time.perf_counter() - start, 1e-7)))
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            n = counts[name]
            start = time.perf_counter()
            for _ in range(n):
                fn()
            times[name].append((time.perf_counter() - start) / n * 1e6)
    return {name: statistics.median(t) for name, t in times.items()}


def measure(name: str, rounds: int) -> dict:
    fn, make = CASES[name]
    args = make()
    g, schedule, kcall, inputs = kernel_of(fn, args)
    expected = fn(*args)
    got = g.bound(schedule)(*inputs)[0]
    torch.testing.assert_close(got, expected)
    fns = paths(g, schedule, inputs)
    fns["aten"] = lambda: kcall.aten(inputs)
    if g.kind == "pointwise":
        with nd_kernels():
            nd, nd_schedule, _, nd_inputs = kernel_of(fn, args)
        if any(p.flat for p in g.params + g.out_params) and not any(p.flat for p in nd.params + nd.out_params):
            nd_paths = paths(nd, nd_schedule, nd_inputs)
            fns["nd bound"], fns["nd raw"] = nd_paths["bound"], nd_paths["raw"]
    t = medians(fns, rounds)
    t["python (bound - raw)"] = t["bound"] - t["raw"]
    t["python (packed - raw)"] = t["packed"] - t["raw"]
    t["flat"] = any(p.flat for p in g.params + g.out_params)
    return t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.cases:
        t = measure(name, args.rounds)
        print(f"{name}: " + ", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items()),
              flush=True)


if __name__ == "__main__":
    main()
