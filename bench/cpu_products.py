"""Every convolution and matrix product of the zoo models, ATen against oneDNN on a packed weight
(the two implementations of fastc.conv2d_act / fastc.linear_act); writes a markdown table.

    python bench/cpu_products.py [--models cnn gpt ...] [--out docs/benchmarks/cpu-products.md]

Each product is recorded from an eager forward at batch 8 (a dispatch mode sees every
aten.convolution / addmm / mm with a weight read transposed), then both implementations run
side by side in interleaved rounds (median of the rounds, each the mean of a loop sized to about
10 ms), in one process, after checking they agree. Run it on a quiet machine.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from fastc.costmodel import machine
from fastc.kernels import onednn
from fastc_eval import zoo

aten = torch.ops.aten
MODELS = ["cnn", "gpt", "digits-cnn", "digits-vit", "char-lm", "gpt2", "llama", "bert", "vit", "resnet",
          "convnext", "mobilenet_v2"]


class _Products(TorchDispatchMode):
    """Records (kind, problem, aten callable, oneDNN callable) of each product run."""

    def __init__(self):
        super().__init__()
        self.found = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is aten.convolution.default and not args[6] and args[0].dim() == 4:
            x, w, b, stride, padding, dilation, _, _, groups = args
            key = ("conv", tuple(x.shape), tuple(w.shape), tuple(stride), tuple(padding), groups)
            if key not in self.found:
                packed = onednn.PackedConv(w, stride, padding, dilation, groups, x.shape)
                self.found[key] = (
                    lambda: onednn.conv2d_act_aten(x, w, b, stride, padding, dilation, groups, None, "none", [], False),
                    lambda: packed(x, b, None, "none", [], False))
        elif func in (aten.addmm.default, aten.mm.default):
            x, wt = (args[1], args[2]) if func is aten.addmm.default else args
            b = args[0] if func is aten.addmm.default else None
            if wt.dim() == 2 and wt.stride(0) == 1 and (b is None or b.dim() == 1):
                w = wt.t()
                key = ("linear", tuple(x.shape), tuple(w.shape))
                if key not in self.found:
                    packed = onednn.PackedLinear(w)
                    self.found[key] = (lambda: onednn.linear_act_aten(x, w, b, None, "none", []),
                                       lambda: packed(x, b, None, "none", []))
        return out


def _loop(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def time_pair(a, b, rounds: int = 7):
    """Median microseconds per call of a and b, interleaved."""
    a(), b()
    n = max(3, min(500, int(0.01 / max(1e-7, _loop(a, 1) / 1e6))))
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(_loop(a, n))
        tb.append(_loop(b, n))
    return statistics.median(ta), statistics.median(tb)


def macs(key) -> int:
    if key[0] == "linear":
        (m, k), (n, _) = key[1], key[2]
        return m * n * k
    (batch, _, h, w), (cout, cin_g, kh, kw), stride = key[1], key[2], key[3]
    return batch * (h // stride[0]) * (w // stride[1]) * cout * cin_g * kh * kw


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = []
    for name in args.models:
        model, inputs = zoo.build(name, batch=8)
        recorder = _Products()
        with torch.no_grad(), recorder:
            model.eval()(**inputs)
        for key, (with_aten, with_onednn) in recorder.found.items():
            torch.testing.assert_close(with_onednn(), with_aten(), rtol=1e-4, atol=1e-4)
            ta, to = time_pair(with_aten, with_onednn)
            rows.append((name, key, ta, to))
            print(f"{name:12s} {key[0]:6s} {str(key[1:]):58s} aten {ta:8.1f} us  oneDNN {to:8.1f} us  {ta / to:5.2f}x")
    if args.out:
        _write(args.out, rows)


def _write(path: str, rows) -> None:
    wins = sum(1 for *_, ta, to in rows if to < ta)
    lines = ["# ATen against oneDNN on a packed weight, per product of the zoo models", "",
             "Written by `bench/cpu_products.py`.", "",
             f"Machine: {machine.describe()}; batch 8; median of 7 interleaved rounds. oneDNN's convolution "
             "times include the copy back to a contiguous tensor (what a conv2d_act read by other ops pays).", "",
             f"oneDNN is faster on {wins} of {len(rows)} products.", "",
             "| model | product | problem | multiply-adds | ATen us | oneDNN us | ATen / oneDNN |",
             "|---|---|---|---|---|---|---|"]
    for name, key, ta, to in rows:
        lines.append(f"| {name} | {key[0]} | {key[1:]} | {macs(key):,} | {ta:.1f} | {to:.1f} | {ta / to:.2f} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
