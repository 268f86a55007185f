"""The native CPU target computes what eager does and fails quietly when it cannot:

- float math: only a reduction's accumulation may be reordered (no constant folding of
  `x * 1000 * 1000`, no FMA contraction of `a * b + c`);
- the disk cache: a damaged, swapped or edited entry is rebuilt and rewritten, never run and
  never a reason to run as ATen (checked in a fresh process, as a later run of a program is);
- builds: a dynamic-shape GELU builds natively, and a failing build leaves its diagnostics in
  the kernel's fallback reason, not on stderr;
- threads: one compiled kernel called from several threads builds each schedule once.

As in test_cpu_native.py, generated code always runs (kernel_choice="generated"), and fastc's
report says which kernels ran natively.
"""
import json
import os
import threading

import pytest
import torch
import torch.nn.functional as F

from codegen_cases import mark, trace
from fastc.report import REPORTS
from test_cpu_native import GENERATED, _run_python, assert_matches, assert_native, check, compiled

pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")

LENIENT = {**GENERATED, "on_error": "fallback"}   # a failing build runs as ATen, with its reason


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# Float math: strict outside a reduction's accumulation -----------------------------------------

@pytest.mark.parametrize("dtype, x, big", [(torch.float16, 0.01, 1000.0), (torch.float32, 1e-30, 1e20)])
def test_constant_chains_are_not_folded(dtype, x, big):
    # reassoc on the multiplies let LLVM fold x * big * big into x * big**2: inf where eager is finite.
    t = torch.full((16,), x, dtype=dtype)
    reports = check(lambda t: t * big * big, t, kinds=["pointwise"], tol=(0, 0))
    assert torch.isfinite(compiled(lambda t: t * big * big)(t)).all(), reports[0].text()


def test_pointwise_multiply_add_is_not_contracted_into_an_fma():
    # a * b rounds to 1 + 2^-11 (a tie, to even); + c is then exactly 0. An FMA gives 2^-24.
    a = torch.full((16,), 1 + 2.0 ** -12)
    c = torch.full((16,), -(1 + 2.0 ** -11))
    check(lambda a, b, c: a * b + c, a, a, c, kinds=["pointwise"], tol=(0, 0))


@pytest.mark.parametrize("dtype, x, big", [(torch.float16, 0.01, 1000.0), (torch.float32, 1e-30, 1e20)])
def test_producers_fused_into_a_reduction_stay_strict(dtype, x, big):
    # The multiplies are fused into the sum's loop; only the accumulating add may be reordered.
    t = torch.full((2, 4), x, dtype=dtype)
    check(lambda t: (t * big * big).sum(-1), t, kinds=["reduction"], tol=(0, 1e-3))


def test_only_the_accumulation_of_a_reduction_is_marked(_private_kernel_cache):
    """In the lowered module (the cache entry), the sum's fadd carries reassoc and nothing else
    has fast-math flags: not the fused multiplies, not the softmax's subtract and divide."""
    from fastc.codegen.cpu.module_cache import verified_entry
    check(lambda t: (t * 1000.0 * 1000.0).sum(-1), torch.randn(4, 64), kinds=["reduction"])
    check(lambda t: torch.softmax(t * 0.5, -1), torch.randn(4, 64), kinds=["reduction"])
    texts = [verified_entry(p.stem, p.read_bytes()) for p in sorted((_private_kernel_cache / "cpu").glob("*.mlir"))]
    assert len(texts) == 2
    lines = [line for text in texts for line in text.splitlines()]
    flagged = [line for line in lines if "fastmath" in line]
    assert flagged and all("llvm.fadd" in line or "maximum" in line for line in flagged), flagged
    assert all("<reassoc>" in line for line in flagged), flagged
    fmuls = [line for line in lines if "llvm.fmul" in line]
    assert fmuls and not any("fastmath" in line for line in fmuls), fmuls


def test_relax_float_math_marks_accumulators_of_reducing_ops_only():
    from torch_mlir import ir

    from fastc.codegen.cpu.reassociation import relax_float_math
    text = """
    #id = affine_map<(d0, d1) -> (d0, d1)>
    #row = affine_map<(d0, d1) -> (d0)>
    func.func @f(%x: tensor<4x8xf32>, %init: tensor<4xf32>, %e: tensor<4x8xf32>) -> (tensor<4xf32>, tensor<4x8xf32>) {
      %c = arith.constant 2.0 : f32
      %s = linalg.generic {indexing_maps = [#id, #row], iterator_types = ["parallel", "reduction"]}
          ins(%x : tensor<4x8xf32>) outs(%init : tensor<4xf32>) {
      ^bb0(%in: f32, %acc: f32):
        %m = arith.mulf %in, %c : f32
        %a = arith.addf %m, %acc : f32
        linalg.yield %a : f32
      } -> tensor<4xf32>
      %p = linalg.generic {indexing_maps = [#id, #id], iterator_types = ["parallel", "parallel"]}
          ins(%x : tensor<4x8xf32>) outs(%e : tensor<4x8xf32>) {
      ^bb0(%in: f32, %out: f32):
        %m = arith.mulf %in, %c : f32
        %a = arith.addf %m, %out : f32
        linalg.yield %a : f32
      } -> tensor<4x8xf32>
      return %s, %p : tensor<4xf32>, tensor<4x8xf32>
    }"""
    context = ir.Context()
    module = ir.Module.parse(text, context)
    assert relax_float_math(module, context) == 1
    printed = str(module)
    flagged = [line for line in printed.splitlines() if "fastmath" in line]
    assert len(flagged) == 1 and "arith.addf" in flagged[0] and "fastmath<reassoc>" in flagged[0], printed
    assert printed.index(flagged[0]) < printed.index('iterator_types = ["parallel", "parallel"]'), printed


# The disk cache of lowered modules ---------------------------------------------------------------

# One kernel per damage (the same signature: a swapped entry would run, computing the other's).
CACHED = {
    "swap_a": "lambda x: (x + 1.0) * 2.0",
    "swap_b": "lambda x: (x - 1.0) * 3.0",
    "edited": "lambda x: (x + 1.0) * 5.0",
    "truncated": "lambda x: (x + 1.0) * 6.0",
    "empty": "lambda x: (x + 1.0) * 7.0",
    "garbage": "lambda x: (x + 1.0) * 8.0",
    "headerless": "lambda x: (x + 1.0) * 9.0",
}

CHILD = """
    import json, logging, torch
    from fastc.codegen import cache
    from fastc.report import REPORTS
    cache._codegen_hash = lambda: "%(hash)s"
    warnings = []

    class Collect(logging.Handler):
        def emit(self, record):
            warnings.append(record.getMessage())
    logging.getLogger("fastc").addHandler(Collect())
    CACHED = %(cached)r
    options = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise"}
    x = torch.arange(128, dtype=torch.float32).reshape(8, 16) / 7
    results = {}
    for name, fn in CACHED.items():
        fn = eval(fn)
        torch._dynamo.reset()
        start = len(REPORTS)
        out = torch.compile(fn, backend="fastc", options=options)(x)
        results[name] = {"equal": bool(torch.allclose(out, fn(x), rtol=1e-6, atol=1e-6)),
                         "generated": [k for r in REPORTS[start:] for k in r.generated_kernels],
                         "aten": [k for r in REPORTS[start:] for k in r.aten_kernels]}
    print(json.dumps({"results": results, "stats": {k: v for k, v in cache.STATS.items() if k.startswith("cpu")},
                      "warnings": [w for w in warnings if "cache entry" in w]}))
"""


def _populate(root) -> dict:
    """{name: (path of its cache entry, its bytes)} after compiling each of CACHED here."""
    entries = {}
    x = torch.arange(128, dtype=torch.float32).reshape(8, 16) / 7
    for name, fn in CACHED.items():
        fn = eval(fn)
        before = set((root / "cpu").glob("*.mlir")) if (root / "cpu").exists() else set()
        check(fn, x, kinds=["pointwise"], tol=(1e-6, 1e-6))
        (path,) = set((root / "cpu").glob("*.mlir")) - before
        entries[name] = (path, path.read_bytes())
    return entries


def test_damaged_cache_entries_are_rebuilt_in_a_fresh_process(_private_kernel_cache):
    """Entries damaged after a first process wrote them (two kernels' files exchanged, one edited
    so that it still parses, truncated, emptied, overwritten with random bytes, or written in the
    old header-less format): a fresh process computes eager's values with native code, and each
    entry is rewritten as it was."""
    from fastc.codegen.cache import _codegen_hash
    entries = _populate(_private_kernel_cache)
    (a, a_bytes), (b, b_bytes) = entries["swap_a"], entries["swap_b"]
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    path, data = entries["edited"]
    edited = data.replace(b"5.000000e+00 : f32", b"4.000000e+00 : f32")
    assert edited != data
    path.write_bytes(edited)
    path, data = entries["truncated"]
    path.write_bytes(data[:len(data) // 2])
    entries["empty"][0].write_bytes(b"")
    entries["garbage"][0].write_bytes(os.urandom(4096))
    path, data = entries["headerless"]
    path.write_bytes(data.split(b"\n", 1)[1])  # the module alone: parses, but is not verified

    child = CHILD % {"hash": _codegen_hash(), "cached": CACHED}
    result = _run_python(child, FASTC_CACHE_DIR=str(_private_kernel_cache))
    for name, r in result["results"].items():
        assert r["equal"], (name, result)
        assert r["generated"] and not r["aten"], (name, result)
    from fastc.codegen.cpu.module_cache import verified_entry
    assert result["stats"]["cpu_disk_corrupt"] == len(CACHED), result
    assert result["stats"]["cpu_disk_hits"] == 0, result
    assert len(result["warnings"]) == len(CACHED), result
    for name, (path, data) in entries.items():
        assert path.read_bytes() == data, name   # rewritten, valid, and the same as first written
        verified_entry(path.stem, path.read_bytes())
    assert not list((_private_kernel_cache / "cpu").glob("*.tmp"))


def test_a_cached_module_that_does_not_build_is_rebuilt(_private_kernel_cache):
    """An entry that verifies but whose module no longer builds (say, written by a buggy
    version under the same key) is rebuilt from source, and the kernel stays native."""
    from fastc.codegen.cpu import module_cache
    x = torch.randn(8, 16)
    check(lambda t: t * 2.0 + 1.0, x, kinds=["pointwise"])
    (path,) = (_private_kernel_cache / "cpu").glob("*.mlir")
    good = path.read_bytes()
    path.write_text(module_cache.entry_text(path.stem, "module {\n}\n"))  # verifies; has no kernel in it
    check(lambda t: t * 2.0 + 1.0, x, kinds=["pointwise"])
    assert path.read_bytes() == good


def test_verified_entry_names_what_is_wrong():
    from fastc.codegen.cpu.module_cache import entry_text, verified_entry
    good = entry_text("k1", "module {\n}\n").encode()
    assert verified_entry("k1", good) == "module {\n}\n"
    for key, data, why in [("k2", good, "another key"), ("k1", b"", "empty"), ("k1", b"\xff\xfe\x00", "UTF-8"),
                           ("k1", good.replace(b"}\n", b"} \n"), "checksum"), ("k1", b"module {\n}\n", "header"),
                           ("k1", good[:40], "header")]:
        with pytest.raises(ValueError, match=why):
            verified_entry(key, data)


# Builds: dynamic GELU, and diagnostics kept off stderr ------------------------------------------

@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_dynamic_gelu_builds_natively(approximate, dtype, capfd):
    fn = lambda x: F.gelu(x, approximate=approximate)  # noqa: E731
    start = len(REPORTS)
    run = compiled(fn, dynamic=True)
    for shape in [(4, 8), (5, 7), (3, 11), (33,)]:
        x = torch.randn(shape).to(dtype)
        assert_matches(run(x), fn(x))
    assert_native(REPORTS[start:], kinds=["pointwise"])
    assert capfd.readouterr().err == ""


def _own_lines_only(err: str) -> None:
    """Every line on stderr is one of fastc's own ("fastc: ...") messages."""
    raw = [line for line in err.splitlines() if line.strip() and not line.startswith("fastc:")]
    assert not raw, err


def test_a_failing_build_keeps_its_diagnostics_off_stderr(monkeypatch, capfd):
    """Without reconcile-unrealized-casts the ExecutionEngine's LLVM translation fails on an
    unrealized_conversion_cast: MLIR's diagnostic goes into the fallback reason, not to stderr."""
    from fastc.codegen.cpu import stages
    steps = stages.lowering_pipeline
    monkeypatch.setattr(stages, "lowering_pipeline",
                        lambda *a: [s for s in steps(*a) if s != "reconcile-unrealized-casts"])
    fn = lambda x: F.gelu(x)  # noqa: E731
    start = len(REPORTS)
    x = torch.randn(5, 7)
    assert_matches(compiled(fn, LENIENT, dynamic=True)(x), fn(x))
    reasons = [why for r in REPORTS[start:] for _k, why in r.aten_kernels]
    assert reasons and all("unrealized_conversion_cast" in why for why in reasons), reasons
    _own_lines_only(capfd.readouterr().err)


def test_llvm_jit_errors_stay_off_stderr(capfd):
    """LLVM's JIT writes missing symbols straight to file descriptor 2 ("JIT session error");
    torch-mlir's float16 var needs __truncdfhf2, which the JIT lacks: the kernel runs as ATen,
    and that line is in its reason."""
    fn = lambda x: x.var(-1)  # noqa: E731
    x = torch.randn(4, 8).half()
    start = len(REPORTS)
    assert_matches(compiled(fn, LENIENT)(x), fn(x))
    reasons = [why for r in REPORTS[start:] for _k, why in r.aten_kernels]
    if not reasons:
        pytest.skip("this LLVM build links float16 var")
    assert all("JIT session error" in why or "Symbols not found" in why for why in reasons), reasons
    _own_lines_only(capfd.readouterr().err)


# Threads -----------------------------------------------------------------------------------------

def test_one_kernel_called_from_threads_builds_each_schedule_once():
    """Threads call one dynamic-shape kernel at once with different sizes, under a schedule not
    built yet: it is compiled once, and every thread gets its own size's values."""
    from fastc.codegen.cpu import compile_kernels
    from fastc.codegen.schedule import Schedule
    from fastc.ir.kernel_plan import KernelPlan
    gm = mark(trace(lambda x: (x * 2 + 1).exp(), torch.randn(5, 8), symbolic=True), "pointwise")
    made, failed = compile_kernels(KernelPlan.of(gm).kernels)
    assert not failed and len(made) == 1, failed
    (kernel,) = made.values()
    builds, build = [], kernel.compiler

    def counted(k, schedule):
        builds.append(schedule)
        return build(k, schedule)
    kernel.compiler = counted
    fresh = [Schedule(XBLOCK=0, parallel=False, tile=t) for t in (3, 5)]  # serial code, new keys
    inputs = [torch.randn(n, 8) for n in range(2, 10)]
    barrier = threading.Barrier(len(inputs))
    results, errors = {}, []

    def call(i, x):
        try:
            barrier.wait()
            for schedule in fresh + [None]:
                for _ in range(5):
                    (out,) = kernel.run(x, schedule=schedule)
                    torch.testing.assert_close(out, (x * 2 + 1).exp())
            results[i] = out
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=call, args=(i, x)) for i, x in enumerate(inputs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert sorted(builds, key=str) == sorted(fresh, key=str), builds
    for i, x in enumerate(inputs):
        assert results[i].shape == x.shape


def test_twins_share_one_build_lock():
    """Kernels sharing compiled code (a model's repeated layers) share its entries and its lock."""
    import dataclasses
    from fastc.codegen.cpu.native_kernel import NativeKernel
    k = NativeKernel("k0_pointwise", "pointwise", [], [], [], [], [], 1, [])
    twin = dataclasses.replace(k, name="k1_pointwise")
    assert twin.entries is k.entries and twin.build_lock is k.build_lock


# The Triton caches ---------------------------------------------------------------------------------

def test_swapped_spec_entry_is_caught_by_its_key(_private_kernel_cache):
    from fastc.codegen import cache
    cache.store_spec("a" * 64, json.dumps({"which": "a"}))
    cache.store_spec("b" * 64, json.dumps({"which": "b"}))
    root = _private_kernel_cache / "kernels"
    a, b = root / ("a" * 64 + ".json"), root / ("b" * 64 + ".json")
    a_text, b_text = a.read_text(), b.read_text()
    a.write_text(b_text)
    b.write_text(a_text)
    corrupt = cache.STATS["disk_corrupt"]
    assert cache.load_spec("a" * 64) is None and cache.load_spec("b" * 64) is None
    assert cache.STATS["disk_corrupt"] == corrupt + 2


def test_kernel_source_file_is_verified_before_import(_private_kernel_cache, monkeypatch):
    """compile_source imports a .py file from the cache directory: one whose content does not
    hash to its name is rewritten before it is imported, and the module runs the verified text."""
    import inspect

    from fastc.codegen import cache
    source = "def kernel(x):\n    return x + 1\n"
    monkeypatch.setattr(cache, "_COMPILED", {})
    assert cache.compile_source(source, "kernel")(1) == 2
    (path,) = (_private_kernel_cache / "py").glob("kernel_*.py")
    path.write_text("def kernel(x):\n    return x - 1\n")
    monkeypatch.setattr(cache, "_COMPILED", {})
    fn = cache.compile_source(source, "kernel")
    assert fn(1) == 2
    assert path.read_text() == source
    path.write_text("def kernel(x):\n    return x * 100\n")  # changed after the import
    assert inspect.getsource(fn) == source                   # what Triton reads is still verified
