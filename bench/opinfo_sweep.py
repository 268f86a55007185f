"""Sweeps PyTorch's OpInfo database through aot_eager and fastc, and writes the expected-failures table.

    python bench/opinfo_sweep.py                       # both backends, prints counts and the table
    python bench/opinfo_sweep.py --backends fastc --ops add,mul,cat
    python bench/opinfo_sweep.py --write-table         # rewrite tests/opinfo_expected_failures.py
    python bench/opinfo_sweep.py --grad --write-table  # the gradient sweep: its "grad:" entries
    python bench/opinfo_sweep.py --target cpu --write-table  # native CPU code: its "cpu:" entries

Each op's first CPU float32 sample runs eagerly and compiled, exactly as tests/test_opinfo.py
does (the check lives there). The table's reasons are:

- "fails under aot_eager too: <error>" for an op that aot_eager fails as well (not fastc's doing);
- "fastc bug: <error>" for an op that passes under aot_eager but fails under fastc.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import torch  # noqa: E402
import torch._dynamo  # noqa: E402

import test_opinfo  # noqa: E402

TABLE = ROOT / "tests" / "opinfo_expected_failures.py"


def short_error(e: BaseException, limit: int = 140) -> str:
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    # Dynamo wraps a backend's error: name the error underneath.
    if type(e).__name__ == "BackendCompilerFailed" and e.__cause__ is not None:
        return short_error(e.__cause__, limit)
    text = f"{type(e).__name__}: {first}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --target: fastc's options and the table's key prefix for that sweep (as in tests/test_opinfo.py).
TARGETS = {
    "auto": ({}, ""),
    "cpu": (test_opinfo.CPU_OPTIONS, test_opinfo.CPU_PREFIX),
    "triton-interpret": ({"target": "triton-interpret"}, test_opinfo.TRITON_PREFIX),
}


def sweep(backend: str, ops: list, grad: bool = False, options: dict | None = None) -> dict[str, dict]:
    """op key -> {"status": "pass"|"fail"|"skip", "error": str, "seconds": float}."""
    results = {}
    for op in ops:
        key = test_opinfo.op_key(op)
        start = time.perf_counter()
        try:
            info = test_opinfo.check_op(op, backend, grad=grad,
                                        options=options if backend == "fastc" else None)
            results[key] = {"status": "pass", **info}
        except BaseException as e:  # pytest.skip raises a BaseException
            if isinstance(e, KeyboardInterrupt):
                raise
            status = "skip" if type(e).__name__ == "Skipped" else "fail"
            results[key] = {"status": status, "error": short_error(e)}
        finally:
            torch._dynamo.reset()
        results[key]["seconds"] = time.perf_counter() - start
    return results


def table(results: dict[str, dict[str, dict]], prefix: str = "") -> dict[str, str]:
    """Table entries (keys carry `prefix`: "grad:" for the gradient sweep) for fastc's failures."""
    entries = {}
    fastc = results.get("fastc", {})
    aot = results.get("aot_eager", {})
    for key, r in fastc.items():
        if r["status"] != "fail":
            continue
        if aot.get(key, {}).get("status") == "fail":
            entries[prefix + key] = f"fails under aot_eager too: {aot[key]['error']}"
        else:
            entries[prefix + key] = f"fastc bug: {r['error']}"
    return entries


def write_table(entries: dict[str, str], prefix: str = ""):
    """Rewrites the table: the entries of this sweep replace those with the same key prefix."""
    from opinfo_expected_failures import EXPECTED_FAILURES
    prefixes = (test_opinfo.GRAD_PREFIX, test_opinfo.TRITON_PREFIX, test_opinfo.CPU_PREFIX)

    def prefix_of(key):
        return next((p for p in prefixes if key.startswith(p)), "")
    kept = {k: v for k, v in EXPECTED_FAILURES.items() if prefix_of(k) != prefix}
    entries = {**kept, **entries}
    head = TABLE.read_text().split("EXPECTED_FAILURES")[0] if TABLE.exists() else ""
    lines = [head + "EXPECTED_FAILURES: dict[str, str] = {"]
    for key in sorted(entries):
        lines.append(f"    {key!r}: {entries[key]!r},")
    lines.append("}")
    TABLE.write_text("\n".join(lines) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="aot_eager,fastc")
    parser.add_argument("--ops", default="", help="comma-separated op keys (default: all swept ops)")
    parser.add_argument("--grad", action="store_true", help="sweep gradients (test_op_gradients_match_eager)")
    parser.add_argument("--target", choices=sorted(TARGETS), default="auto",
                        help="fastc's target: cpu is test_op_through_native_cpu_code_matches_eager "
                             "(generated code always runs), triton-interpret the generated Triton sweep")
    parser.add_argument("--json", help="write per-op results here")
    parser.add_argument("--load", action="append", default=[], help="merge results from earlier --json files")
    parser.add_argument("--write-table", action="store_true", help=f"rewrite {TABLE.relative_to(ROOT)}")
    args = parser.parse_args()
    os.environ.setdefault("FASTC_ON_ERROR", "raise")
    warnings.simplefilter("ignore")

    ops = test_opinfo.swept_ops()
    if args.ops:
        wanted = set(args.ops.split(","))
        ops = [op for op in ops if test_opinfo.op_key(op) in wanted]
    results: dict[str, dict[str, dict]] = {}
    for path in args.load:
        results.update(json.loads(Path(path).read_text()))
    for backend in filter(None, args.backends.split(",")):
        start = time.perf_counter()
        results[backend] = sweep(backend, ops, grad=args.grad, options=TARGETS[args.target][0])
        print(f"{backend}: swept {len(ops)} ops in {time.perf_counter() - start:.0f} s", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))

    print(f"ops swept: {len(ops)}")
    for backend, r in results.items():
        counts = {s: sum(1 for v in r.values() if v["status"] == s) for s in ("pass", "fail", "skip")}
        print(f"{backend:>10}: {counts['pass']} pass, {counts['fail']} fail, {counts['skip']} skip")
    if "fastc" in results:
        passed = [r for r in results["fastc"].values() if r["status"] == "pass"]
        fallbacks = Counter(reason for r in passed for _kernel, reason in r.get("aten", []))
        print(f"fastc ran generated code in {sum(1 for r in passed if r.get('generated'))} ops; "
              f"{sum(fallbacks.values())} planned kernels ran as ATen (Unsupported) in "
              f"{sum(1 for r in passed if r.get('aten'))} ops")
        for reason, n in fallbacks.most_common(10):
            print(f"  {n:4d}  {reason[:150]}")
    if "fastc" in results and "aot_eager" in results:
        bugs = sorted(k for k, r in results["fastc"].items()
                      if r["status"] == "fail" and results["aot_eager"].get(k, {}).get("status") == "pass")
        print(f"pass under aot_eager but fail under fastc: {len(bugs)}")
        for key in bugs:
            print(f"  {key}: {results['fastc'][key]['error']}")
        slowest = sorted(results["fastc"].items(), key=lambda kv: -kv[1]["seconds"])[:10]
        print("slowest under fastc: " + ", ".join(f"{k} {v['seconds']:.1f}s" for k, v in slowest))
    if args.write_table:
        prefix = test_opinfo.GRAD_PREFIX if args.grad else TARGETS[args.target][1]
        write_table(table(results, prefix), prefix)
        print(f"wrote {TABLE}")


if __name__ == "__main__":
    main()
