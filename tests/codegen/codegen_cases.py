"""Helpers for tests/codegen: trace a function to ATen, mark its ops as planned kernels by hand
(until the planning pass runs in these tests), run the planned graph, compare with eager."""
from __future__ import annotations

import os

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

NEEDS_INTERPRETER = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1",
    reason="generated Triton kernels run in Triton's interpreter on CPU: run pytest with TRITON_INTERPRET=1 "
           "(scripts/test.sh does)")

# Masked-off lanes of an interpreted kernel hold zeros, so log(0) and 0/0 warn in numpy there.
QUIET_INTERPRETER = pytest.mark.filterwarnings("ignore::RuntimeWarning:triton.runtime.interpreter")

TOLERANCES = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-2, 2e-2), torch.bfloat16: (5e-2, 5e-2)}


def trace(fn, *args, symbolic=False):
    return make_fx(fn, tracing_mode="symbolic" if symbolic else "real")(*args)


def mark(gm, kind, select=None, kernel=0):
    """Marks the call_function nodes (those `select(node)` accepts) as one kernel of `kind`."""
    for n in gm.graph.nodes:
        if n.op == "call_function" and (select is None or select(n)):
            n.meta.update(kernel=kernel, kernel_kind=kind)
    return gm


def compile_fn(fn, args, kind, select=None, symbolic=False):
    from fastc.codegen.wrapper import compile_planned
    gm = mark(trace(fn, *args, symbolic=symbolic), kind, select)
    # strict: generated code that fails when run raises here, instead of quietly running as ATen.
    return compile_planned(gm, "triton-interpret", strict=True)


def assert_close(actual, expected, dtype=torch.float32):
    atol, rtol = TOLERANCES.get(dtype, (1e-5, 1e-5))
    flat_a = actual if isinstance(actual, (tuple, list)) else (actual,)
    flat_e = expected if isinstance(expected, (tuple, list)) else (expected,)
    assert len(flat_a) == len(flat_e)
    for a, e in zip(flat_a, flat_e):
        if isinstance(e, (tuple, list)):
            assert_close(a, e, dtype)
            continue
        assert a.shape == e.shape and a.dtype == e.dtype, (a.shape, e.shape, a.dtype, e.dtype)
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, equal_nan=True)


def check(fn, args, kind, select=None, dtype=torch.float32, generated=1, symbolic=False):
    """Compiles `fn` with its ops planned as one kernel, runs it, compares with eager; returns info."""
    run, info = compile_fn(fn, args, kind, select, symbolic)
    assert len(info.kernels) == generated, info.text()
    assert_close(run(*args), fn(*args), dtype)
    assert len(info.kernels) == generated, info.text()
    return run, info


def compile_offline(cases: dict, folder, extra_env: dict | None = None) -> dict:
    """{case: "ok" or the error} from Triton's offline sm_90 compiler for `cases`
    ({case: (fn, args, kind, options)}); skips the test when no offline compiler is available."""
    import json
    import subprocess
    import sys
    pytest.importorskip("triton")
    from fastc.codegen.triton import lower_spec
    from fastc.ir.kernel_plan import KernelPlan
    specs, names = [], {}
    for i, (case, (fn, args, kind, options)) in enumerate(cases.items()):
        options = dict(options)
        gm = mark(trace(fn, *args, symbolic=options.pop("symbolic", False)), kind)
        (kernel,) = KernelPlan.of(gm).kernels
        kernel.id = i
        spec = lower_spec(kernel, {"target": "triton", **options})
        specs.append(spec.to_json())
        names[case] = spec.name
    path = folder / "specs.json"
    path.write_text(json.dumps(specs))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(extra_env or {})
    done = subprocess.run([sys.executable, "-m", "fastc.codegen.triton.offline_compile", str(path)],
                          env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0 or not done.stdout.strip():
        pytest.skip(f"offline Triton compilation unavailable: {done.stderr[-500:]}")
    results = json.loads(done.stdout.strip().splitlines()[-1])
    if not any(r == "ok" for r in results.values()) and \
            all("ptxas" in r or "backend" in r.lower() for r in results.values()):
        pytest.skip(f"no NVIDIA toolchain for offline compilation: {next(iter(results.values()))[:300]}")
    return {case: results[name] for case, name in names.items()}
