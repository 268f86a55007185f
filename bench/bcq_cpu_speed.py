"""CPU speed of the native BCQ kernel (kernels/bcq/cpu_native.py) against fp32 ATen linear and
dequantize-then-matmul; writes docs/benchmarks/bcq-cpu.md.

    .venv/bin/python bench/bcq_cpu_speed.py [--out docs/benchmarks/bcq-cpu.md] [--layers 6] [--quick]

(a) Decode (batch 1) through a LLaMA-shaped stack (hidden 2048, intermediate 5632; per layer
    q, k, v, o 2048x2048, gate and up 5632x2048, down 2048x5632, applied in sequence), BCQ at 2,
    3 and 4 bits, group 128, fp16 scales, against fp32 F.linear on the same shapes; ms per token,
    ratio, weight bytes.
(b) Per batch size 1..64 for one 2048x2048 and one 5632x2048 layer: native kernel vs
    dequantize-then-matmul vs fp32 linear (the crossover behind torch_op.NATIVE_MAX_ROWS).

All variants are timed in one process in interleaved rounds; each number is the median round.
The packed weights are random bit words and scales: the kernels' speed does not depend on the
values (correctness is tests/kernels/test_bcq_cpu_native.py's job).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from fastc.kernels.bcq import PackedBCQ, bcq_linear_cpu
from fastc.kernels.bcq import cpu_native

HIDDEN, INTER, GROUP = 2048, 5632, 128
LAYER = [("q", HIDDEN, HIDDEN), ("k", HIDDEN, HIDDEN), ("v", HIDDEN, HIDDEN), ("o", HIDDEN, HIDDEN),
         ("gate", INTER, HIDDEN), ("up", INTER, HIDDEN), ("down", HIDDEN, INTER)]


def machine() -> str:
    model = "unknown CPU"
    flags = ""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in text.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags:"):
                have = set(line.split(":", 1)[1].split())
                flags = ", ".join(f for f in ("avx2", "fma", "f16c", "avx512f", "avx512bw") if f in have)
            if line.startswith("L3 cache:"):
                flags += "; L3 " + line.split(":", 1)[1].strip()
    except OSError:
        pass
    return (f"{model} ({os.cpu_count()} logical CPUs; {flags}), torch {torch.__version__}, "
            f"torch.get_num_threads() = {torch.get_num_threads()}, {platform.system()}")


def load() -> str:
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:
        return "unknown"
    return f"{one:.2f}, {five:.2f}, {fifteen:.2f}"


def random_packed(out: int, inp: int, bits: int, gen: torch.Generator) -> PackedBCQ:
    words = -(-inp // 32)
    b = torch.randint(-2 ** 31, 2 ** 31 - 1, (bits, words, out), dtype=torch.int32, generator=gen)
    s = (torch.rand(bits, inp // GROUP, out, generator=gen) * 0.05 / 2 ** torch.arange(bits).view(-1, 1, 1)).half()
    return PackedBCQ(b, s, out, inp, GROUP)


def timed_rounds(variants: dict, rounds: int) -> dict:
    """{name: median seconds of one call of variants[name]()} with the variants interleaved."""
    for fn in variants.values():   # warm-up (and JIT builds)
        fn()
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def decode_stack(layers: int, rounds: int, gen) -> list[str]:
    dense = [[torch.randn(o, i, generator=gen) * 0.02 for _, o, i in LAYER] for _ in range(layers)]
    fp32_bytes = sum(w.numel() * 4 for layer in dense for w in layer)
    x0 = torch.randn(1, HIDDEN, generator=gen)

    def run_dense():
        for layer in dense:
            h = x0
            q = torch.nn.functional.linear(h, layer[0])
            torch.nn.functional.linear(h, layer[1])
            torch.nn.functional.linear(h, layer[2])
            h = torch.nn.functional.linear(q, layer[3])
            g = torch.nn.functional.linear(h, layer[4])
            torch.nn.functional.linear(h, layer[5])
            torch.nn.functional.linear(g, layer[6])

    def stack_runner(packed):
        def run():
            for layer in packed:
                h = x0
                q = bcq_linear_cpu(h, layer[0], kernel="native")
                bcq_linear_cpu(h, layer[1], kernel="native")
                bcq_linear_cpu(h, layer[2], kernel="native")
                h = bcq_linear_cpu(q, layer[3], kernel="native")
                g = bcq_linear_cpu(h, layer[4], kernel="native")
                bcq_linear_cpu(h, layer[5], kernel="native")
                bcq_linear_cpu(g, layer[6], kernel="native")
        return run

    stacks = {b: [[random_packed(o, i, b, gen) for _, o, i in LAYER] for _ in range(layers)] for b in (2, 3, 4)}
    variants = {"fp32 F.linear": run_dense}
    variants.update({f"BCQ {b}-bit native": stack_runner(s) for b, s in stacks.items()})
    med = timed_rounds(variants, rounds)
    base = med["fp32 F.linear"]
    lines = [f"Stack of {layers} layers, {sum(o * i for _, o, i in LAYER) * layers / 1e6:.0f} M weights; "
             f"batch 1; {rounds} interleaved rounds, median.", "",
             "| weights | ms / token | speed-up vs fp32 | weight MiB | fp32 bytes / these |", "|---|---|---|---|---|",
             f"| fp32 F.linear | {base * 1e3:.2f} | 1.00x | {fp32_bytes / 2 ** 20:.0f} | 1.0x |"]
    for b, s in stacks.items():
        nbytes = sum(p.nbytes() for layer in s for p in layer)
        t = med[f"BCQ {b}-bit native"]
        lines.append(f"| BCQ {b}-bit g{GROUP} native | {t * 1e3:.2f} | {base / t:.2f}x | "
                     f"{nbytes / 2 ** 20:.1f} | {fp32_bytes / nbytes:.1f}x |")
    return lines


def per_batch(rounds: int, gen, batches) -> list[str]:
    lines = ["| layer (out x in) | batch | native ms | dequantize+matmul ms | fp32 linear ms | fastest BCQ |",
             "|---|---|---|---|---|---|"]
    for out, inp in [(HIDDEN, HIDDEN), (INTER, HIDDEN)]:
        packed = [random_packed(out, inp, 3, gen) for _ in range(3)]
        dense = [torch.randn(out, inp, generator=gen) for _ in range(3)]
        for m in batches:
            x = torch.randn(m, inp, generator=gen)
            turn = {"i": 0}

            def pick(seq):
                turn["i"] = (turn["i"] + 1) % len(seq)
                return seq[turn["i"]]
            med = timed_rounds({
                "native": lambda: bcq_linear_cpu(x, pick(packed), kernel="native"),
                "dequantize": lambda: bcq_linear_cpu(x, pick(packed), kernel="dequantize"),
                "fp32": lambda: torch.nn.functional.linear(x, pick(dense)),
            }, rounds)
            best = "native" if med["native"] <= med["dequantize"] else "dequantize"
            lines.append(f"| {out} x {inp} | {m} | {med['native'] * 1e3:.2f} | {med['dequantize'] * 1e3:.2f} | "
                         f"{med['fp32'] * 1e3:.2f} | {best} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs/benchmarks/bcq-cpu.md"))
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (default: leave)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds and batches, no file written")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    rounds = 5 if args.quick else args.rounds
    load_before = load()
    started = time.time()
    stack = decode_stack(2 if args.quick else args.layers, rounds, gen)
    print("\n".join(stack), flush=True)
    batches = (1, 8, 32) if args.quick else (1, 2, 4, 8, 16, 32, 64)
    table = per_batch(rounds, gen, batches)
    print("\n".join(table), flush=True)
    if args.quick:
        return
    note = ""
    if max(float(v) for v in load_before.split(", ")[:1] + load().split(", ")[:1]) > 1.5:
        note = (f"\n**Load note**: the 1-minute load average was {load_before} before and {load()} after "
                f"the run (other jobs on the machine); numbers are noisier than on an idle machine.\n")
    text = "\n".join([
        "# BCQ on the CPU: native kernel vs fp32 ATen linear", "",
        f"Machine: {machine()}. Load average at start: {load_before}. Run took {time.time() - started:.0f} s.",
        "", "Reproduce: `.venv/bin/python bench/bcq_cpu_speed.py" + (f" --threads {args.threads}" if args.threads else "")
        + "` (writes this file).", note,
        "Native kernel: `kernels/bcq/cpu_native.py` (MLIR -> LLVM JIT, opt level 3, sign-select with masked "
        "adds over 16/32 output rows, OpenMP over output blocks). fp16 scales, group 128, random bit words.",
        "", "## (a) Decode, batch 1, LLaMA-shaped layers (hidden 2048, intermediate 5632)", "", *stack, "",
        "## (b) Per batch size, 3-bit, group 128", "",
        "`dequantize+matmul` rebuilds the fp32 weight on every call (never cached) and then runs one ATen GEMM.",
        "", *table, ""])
    Path(args.out).write_text(text)
    print("wrote", args.out)


if __name__ == "__main__":
    sys.exit(main())
