"""The native CPU target (torch-mlir -> linalg -> MLIR passes -> LLVM, run over torch storage)
through torch.compile, against eager PyTorch.

Every test but the kernel-choice ones runs the generated code (kernel_choice="generated", so a
measured ATen win cannot hide a wrong kernel) with on_error="raise", and checks in fastc's
report that the native kernels really ran: generated kernels of the expected kinds, no planned
kernel quietly run as ATen. Kernel kinds, dtypes, input and output layouts, dynamic shapes, models
of tests/model_zoo.py, the ATen-or-native choice, no OpenMP, and the disk cache across processes.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import model_zoo
from codegen_cases import TOLERANCES, mark, trace
from fastc.report import REPORTS

pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")

# Generated kernels only; products stay ATen calls (not fastc.conv2d_act / linear_act), so that
# their epilogues are kernels here too.
GENERATED = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise", "disable": "fuse-product-epilogues"}
TOL = {**TOLERANCES, torch.float32: (1e-5, 1e-5), torch.float64: (1e-10, 1e-10)}
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def assert_matches(actual, expected, tol=None, strides=False):
    """Same structure, shapes, dtypes and values (NaN where eager has NaN); exact for integers and
    bools. `strides`: the same memory layout as eager's too."""
    flat_a, spec_a = torch.utils._pytree.tree_flatten(actual)
    flat_e, spec_e = torch.utils._pytree.tree_flatten(expected)
    assert spec_a == spec_e, (spec_a, spec_e)
    for i, (a, e) in enumerate(zip(flat_a, flat_e)):
        assert a.shape == e.shape and a.dtype == e.dtype, (i, a.shape, e.shape, a.dtype, e.dtype)
        atol, rtol = tol or (TOL.get(e.dtype, (0, 0)) if e.is_floating_point() else (0, 0))
        torch.testing.assert_close(a, e, atol=atol, rtol=rtol, equal_nan=True, msg=lambda m: f"output {i}: {m}")
        if strides:
            assert a.stride() == e.stride(), (i, a.stride(), e.stride())


def assert_native(reports, kinds=(), aten=()):
    """Every graph compiled for the cpu target, generated kernels ran (one of each of `kinds`
    among them), and the only planned kernels run as ATen are those whose reason contains one of
    `aten`."""
    assert reports, "nothing was compiled"
    text = "\n".join(r.text() for r in reports)
    assert all(r.target == "cpu" and r.fallback is None for r in reports), text
    generated = [k for r in reports for k in r.generated_kernels]
    assert generated, text
    for kind in kinds:
        assert any(name.endswith("_" + kind) for name in generated), (kind, text)
    unexpected = [(k, why) for r in reports for k, why in r.aten_kernels if not any(a in why for a in aten)]
    assert not unexpected, text
    return generated


def compiled(fn, options=GENERATED, dynamic=False):
    torch._dynamo.reset()
    return torch.compile(fn, backend="fastc", options=options, dynamic=dynamic)


def check(fn, *args, kinds=(), tol=None, strides=False, aten=()):
    """fn through the cpu target (generated code only) matches eager; returns the reports."""
    start = len(REPORTS)
    actual = compiled(fn)(*args)
    assert_matches(actual, fn(*args), tol, strides)
    assert_native(REPORTS[start:], kinds, aten)
    return REPORTS[start:]


# Kernel kinds ----------------------------------------------------------------------------------

def test_pointwise_chain_with_broadcasting_and_scalars():
    def f(x, y, z):
        a = (x * y + 2.5).sigmoid() * x.tanh()
        b = a.clamp(-0.5, 0.7) - z / 3 + torch.where(x > 0.5, a, -a).exp()
        return b, F.silu(b) * 0.5
    check(f, torch.randn(4, 1, 8), torch.randn(3, 1), torch.randn(8), kinds=["pointwise"])


def test_pointwise_scalar_tensor_and_constant_operands():
    def f(x, t):
        return (x + t) * t - torch.tensor([1.0, 2.0, 3.0, 4.0])
    check(f, torch.randn(3, 4), torch.tensor(2.5), kinds=["pointwise"])


REDUCTIONS = {
    "stats": lambda x, d: (x.sum(d), (x * 2).mean(d), x.amax(d), x.amin(d, keepdim=True), x.var(d),
                           x.std(d, correction=0)),
    "softmax": lambda x, d: (torch.softmax(x * 2, d), torch.log_softmax(x, d)),
}


@pytest.mark.parametrize("axis", ["inner", "outer", "middle"])
@pytest.mark.parametrize("what", sorted(REDUCTIONS))
def test_reductions_over_each_axis(what, axis):
    dim = {"inner": -1, "outer": 0, "middle": 1}[axis]
    x = torch.randn(6, 5, 12)
    check(lambda x: REDUCTIONS[what](x, dim), x, kinds=["reduction"])


def test_layer_norm_with_affine_and_epilogue():
    def f(x, w, b):
        return F.gelu(F.layer_norm(x, (16,), w, b)) + 1
    check(f, torch.randn(2, 7, 16), torch.randn(16), torch.randn(16), kinds=["reduction"])


def test_reduction_over_several_axes_keepdim():
    check(lambda x: x - x.mean((0, 2), keepdim=True) + x.sum((1, 2)).amax(), torch.randn(3, 4, 5),
          kinds=["reduction"])


def test_argmax_and_sum_of_booleans():
    check(lambda x: (x.argmax(-1), x.argmin(0), (x > 0).sum(-1)), torch.randn(5, 7), kinds=["reduction"],
          aten=["of floats (torch-mlir ignores NaN)"])


def test_integer_argmax_is_native_and_float_argmax_with_nan_is_right():
    check(lambda x: (x.argmax(-1), x.argmin(0)), torch.randint(-5, 5, (5, 7)), kinds=["reduction"])
    x = torch.randn(4, 6)
    x[1, 2] = x[2, 0] = float("nan")
    check(lambda t: (t.argmax(-1), t.argmin(0), t.sum(-1)), x, kinds=["reduction"],
          aten=["of floats (torch-mlir ignores NaN)"])


# Matrix products run as ATen (oneDNN/MKL) on this target; their pointwise epilogues are native.
MATMULS = {
    "mm_relu": (lambda a, b: torch.mm(a, b).relu(), lambda: (torch.randn(6, 12), torch.randn(12, 9))),
    "addmm_gelu": (lambda a, w, b: F.gelu(F.linear(a, w, b)) * 2,
                   lambda: (torch.randn(6, 12), torch.randn(9, 12), torch.randn(9))),
    "bmm_scale_tanh": (lambda p, q: (torch.bmm(p, q) * 0.5).tanh(), lambda: (torch.randn(2, 4, 6), torch.randn(2, 6, 5))),
    "transposed_operand_residual": (lambda a, b, r: (a.t() @ b + r).sigmoid(),
                                    lambda: (torch.randn(12, 6), torch.randn(12, 9), torch.randn(6, 9))),
}


@pytest.mark.parametrize("name", sorted(MATMULS))
def test_matmul_with_fused_epilogue(name):
    fn, make = MATMULS[name]
    check(fn, *make(), kinds=["pointwise"])


# Dtypes ------------------------------------------------------------------------------------------

def test_float64():
    def f(x, w):
        return torch.softmax(x * 2, -1) + x.var(0), (x @ w).relu() + 1 / 3
    check(f, torch.randn(6, 10, dtype=torch.float64), torch.randn(10, 4, dtype=torch.float64),
          kinds=["pointwise", "reduction"])


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16])
def test_integer_pointwise_and_sum(dtype):
    def f(i, j):
        k = (i * j + 3) // 4 + torch.remainder(i, 5) - i.abs().maximum(j) + torch.div(i, j, rounding_mode="trunc")
        return k, (k > 2) & (i != 0), k.sum(-1)
    i = torch.randint(-20, 20, (5, 7), dtype=dtype)
    j = torch.tensor([3, -3, 4, -5, 7, 2, 9], dtype=dtype)
    check(f, i, j, kinds=["reduction"])


def test_bool_masks_where_and_comparisons():
    def f(x, y, m):
        keep = (x > 0) & (y < 0.5) | ~m
        return torch.where(keep, x * 2, y - 1), x.masked_fill(x < -1, -1.0), keep ^ (x > y), m * x
    check(f, torch.randn(6, 10), torch.randn(10), torch.randn(6, 10) > 0, kinds=["pointwise"])


def test_mixed_dtype_promotion():
    check(lambda x, i, h: (x * i + i, h * x, torch.where(x > 0, i, 7)),
          torch.randn(4, 5), torch.randint(-5, 5, (4, 5)), torch.randn(4, 5).half(), kinds=["pointwise"])


def test_float16_runs_native():
    def f(x, w):
        return (x * 2 + 1).sigmoid(), torch.softmax(x, -1), x.float().sum(-1), (x @ w).relu()
    x, w = torch.randn(6, 64, dtype=torch.float16), torch.randn(64, 8, dtype=torch.float16)
    check(f, x, w, kinds=["pointwise", "reduction"], tol=(1e-2, 1e-2))


def test_float16_long_rows_accumulate_like_eager():
    x = torch.randn(4, 4096, dtype=torch.float16) + 1
    check(lambda x: (x.sum(-1), x.mean(0), F.layer_norm(x, (4096,))), x, kinds=["reduction"], tol=(1e-2, 1e-2))


@pytest.mark.parametrize("dtype, make", [
    (torch.bfloat16, lambda: torch.randn(5, 7, dtype=torch.bfloat16)),
    (torch.int8, lambda: torch.randint(-100, 100, (5, 7), dtype=torch.int8)),
    (torch.uint8, lambda: torch.randint(0, 256, (5, 7), dtype=torch.uint8)),
])
def test_refused_dtypes_run_as_aten_with_the_reason(dtype, make):
    """bfloat16 (no __truncsfbf2 in LLVM's JIT), int8 (torch-mlir aborts the process) and uint8
    (lowered as signed) are refused before lowering: the kernel runs as ATen, values are eager's."""
    def f(u):
        return (u // 3) + (u > 100) * 2, u.amax(-1)
    x = make()
    start = len(REPORTS)
    assert_matches(compiled(f)(x), f(x))
    (report,) = REPORTS[start:]
    assert report.generated_kernels == [] and report.aten_kernels, report.text()
    assert all(f"dtype {dtype}" in why for _, why in report.aten_kernels), report.text()


def test_bfloat16_inside_a_float32_kernel_is_refused():
    f = lambda x: (x * 3).to(torch.bfloat16).float() + 1  # noqa: E731
    x = torch.randn(4, 6)
    start = len(REPORTS)
    assert_matches(compiled(f)(x), f(x))
    (report,) = REPORTS[start:]
    assert report.aten_kernels and all("bfloat16" in why for _, why in report.aten_kernels), report.text()


def test_nan_and_infinity_propagate_like_eager():
    """torch-mlir lowers maximum/minimum/clamp to compare-and-select, which drops NaN."""
    def f(x):
        return (torch.maximum(x, torch.zeros(6)), torch.minimum(x, torch.zeros(6)), x.clamp(-1, 1),
                F.hardtanh(x), F.relu6(x), x.relu(), torch.softmax(x, -1), x.amax(-1), x.amin(0))
    x = torch.randn(5, 6)
    x[1, 2], x[3, 0], x[0, :] = float("nan"), float("inf"), float("-inf")
    check(f, x, kinds=["pointwise", "reduction"])


# Strides -----------------------------------------------------------------------------------------

LAYOUTS = {
    "transposed": (lambda x: ((x * 2 + 1).exp(), torch.softmax(x, -1), x.sum(0)),
                   lambda: (torch.randn(10, 12).t(),)),
    "sliced": (lambda x, y: ((x + y).relu(), torch.log_softmax(x, -1), y.amax(0)),
               lambda: (torch.randn(10, 12)[2:7, 3:9], torch.randn(8, 12)[1:6, ::2])),
    "expanded": (lambda x, y: (x * y, (x + y).sum(-1), y.mean(0)),
                 lambda: (torch.randn(4, 1).expand(4, 12), torch.randn(12).expand(4, 12))),
    "channels_last": (lambda x: ((x * 2).sigmoid(), torch.softmax(x, 1), x.mean((2, 3))),
                      lambda: (torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),)),
}


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_strided_inputs(name):
    fn, make = LAYOUTS[name]
    args = make()
    assert not all(a.is_contiguous() for a in args)
    check(fn, *args, kinds=["pointwise", "reduction"], strides=True)


def test_non_contiguous_outputs_have_eager_values_and_layout():
    def f(x, a, b):
        return (x + 1).permute(2, 0, 1), (x * 2).transpose(0, 1), (a @ b).relu().t(), x.exp()[:, 1:]
    x = torch.randn(3, 4, 5)
    check(f, x, torch.randn(5, 6), torch.randn(6, 7), kinds=["pointwise"], strides=True)


def test_matmul_epilogue_on_sliced_and_expanded_operands():
    def f(a, b, p, q):
        return (a @ b + 1).relu(), (p @ q) * 2
    check(f, torch.randn(6, 12)[1:4], torch.randn(14, 5)[1:13], torch.randn(2, 3, 4),
          torch.randn(4, 5).expand(2, 4, 5), kinds=["pointwise"])


# Dynamic shapes ----------------------------------------------------------------------------------

DYNAMIC = {
    "pointwise_scalar": (lambda x, y, s: (x * y + s).sigmoid() * s, lambda n: (torch.randn(n, 7), torch.randn(7), n / 4)),
    "softmax_outer_mean": (lambda x: torch.softmax(x * 2, -1) + x.mean(0), lambda n: (torch.randn(4, n),)),
    "layer_norm": (lambda x, w: F.layer_norm(x, (16,), w) * 2, lambda n: (torch.randn(n, 3, 16), torch.randn(16))),
    "linear_gelu": (lambda x, w, b: F.gelu(F.linear(x, w, b)), lambda n: (torch.randn(n, 8), torch.randn(6, 8), torch.randn(6))),
    "strided": (lambda x: ((x.t() * 2).exp(), (x[1:] + 1).amax(-1)), lambda n: (torch.randn(n, 11),)),
}


@pytest.mark.parametrize("name", sorted(DYNAMIC))
def test_dynamic_shapes_one_compilation_several_sizes(name):
    fn, make = DYNAMIC[name]
    start = len(REPORTS)
    run = compiled(fn, dynamic=True)
    for n in (5, 7, 10):  # distinct from the other sizes, so no size is specialized
        args = make(n)
        assert_matches(run(*args), fn(*args))
    assert len(REPORTS[start:]) == 1, [r.text() for r in REPORTS[start:]]
    assert_native(REPORTS[start:])


# Schedules ---------------------------------------------------------------------------------------

def FIRST_PARALLEL_CASE(x, y):
    return (x * y + 1).relu()


@pytest.mark.parametrize("kind, fn, make", [
    ("pointwise", FIRST_PARALLEL_CASE, lambda: (torch.randn(300, 70).t(), torch.randn(300))),
    ("reduction", lambda x: torch.softmax(x, -1) * x.sum(0), lambda: (torch.randn(90, 130),)),
    ("reduction", lambda x: x.var(0), lambda: (torch.randn(90, 130)[5:],)),
])
def test_parallel_schedules_compute_what_the_serial_one_does(kind, fn, make):
    """Parallel builds (the kernel split by rows on torch's OpenMP threads) are made on demand;
    each computes eager's values. A kernel that does not split runs its serial code."""
    from fastc.codegen.cpu.build import PARALLEL, SERIAL, compile_kernels
    from fastc.codegen.schedule import Schedule
    from fastc.ir.kernel_plan import KernelPlan
    args = make()
    gm = mark(trace(fn, *args), kind)
    (kernel,) = KernelPlan.of(gm).kernels
    made, failed = compile_kernels([kernel])
    assert not failed and kernel.id in made, failed
    by_node = dict(zip([n for n in gm.graph.nodes if n.op == "placeholder"], args))
    inputs = [by_node[n] for n in kernel.inputs]
    expected = fn(*args)
    schedules = [SERIAL, PARALLEL, Schedule(XBLOCK=0, parallel=True, tile=16)]
    for s in schedules:
        (actual,) = made[kernel.id].run(*inputs, schedule=s)
        assert_matches(actual, expected)
    entries, split = made[kernel.id].entries, made[kernel.id].split
    # The first kernel splits (rows of x.t(), y broadcast); the others read every row (sum(0), var(0)).
    assert (split.split is not None) == (torch.get_num_threads() > 1 and fn is FIRST_PARALLEL_CASE), split.text()
    assert (entries[PARALLEL] is not entries[SERIAL]) == (split.split is not None)


# Models ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "conv_bn", "attention_block", "attention_block_sdpa", "gpt2", "bert"])
def test_model_zoo_inference(name):
    if name in ("gpt2", "bert"):
        pytest.importorskip("transformers")
    model, inputs = model_zoo.build(name)
    model.eval()
    start = len(REPORTS)
    run = compiled(model)
    with torch.no_grad():
        expected = model_zoo.main_output(model(**inputs))
        actual = model_zoo.main_output(run(**inputs))
        again = model_zoo.main_output(run(**inputs))
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(again, expected, rtol=1e-4, atol=1e-5)
    assert_native(REPORTS[start:])


# Kernel choice -----------------------------------------------------------------------------------

def test_measured_choice_through_torch_compile_is_correct():
    """The defaults on CPU tensors: target auto -> cpu, kernel_choice measure."""
    model, inputs = model_zoo.build("attention_block")
    model.eval()
    start = len(REPORTS)
    run = compiled(model, options={"on_error": "raise"})
    with torch.no_grad():
        expected = model(**inputs)
        for _ in range(2):  # measured at the first call, the winners at the second
            torch.testing.assert_close(run(**inputs), expected, rtol=1e-4, atol=1e-5)
    assert_native(REPORTS[start:])


def test_measured_choice_records_a_winner_per_kernel():
    from fastc.codegen.schedule import Schedule
    from fastc.codegen.wrapper import compile_planned
    from fastc.costmodel import ATEN

    def f(x, b):
        return torch.softmax(x * 2 + b, -1), (x.relu() + 1).sum(0)
    x, b = torch.randn(8, 16), torch.randn(16)
    gm = trace(f, x, b)
    mark(gm, "reduction", lambda n: n.name in ("mul", "add", "_softmax"), kernel=0)
    mark(gm, "reduction", lambda n: n.name in ("relu", "add_1", "sum_1"), kernel=1)
    run, info = compile_planned(gm, "cpu", strict=True, choose="measure")
    assert info.kernels == ["k0_reduction", "k1_reduction"], info.text()
    for _ in range(2):
        assert_matches(tuple(run(x, b)), f(x, b))
    chosen = [r for r in info.measurements if r["chosen"]]
    assert sorted(r["name"] for r in chosen) == ["k0_reduction", "k1_reduction"]
    assert all(r["candidate"] == ATEN or isinstance(Schedule(**r["candidate"]), Schedule) for r in chosen)
    assert "measured k0_reduction" in info.text()


def test_invalid_kernel_choice_raises_value_error_naming_the_option():
    from fastc.codegen.wrapper import compile_planned
    with pytest.raises(Exception, match=r"kernel_choice='fastest' is not valid \(valid: measure, generated\)") as e:
        compiled(lambda x: x + 1, options={"target": "cpu", "kernel_choice": "fastest"})(torch.randn(3))
    chain, err = [], e.value
    while err is not None:
        chain.append(err)
        err = err.__cause__ or getattr(err, "inner_exception", None)
    assert any(isinstance(x, ValueError) for x in chain), chain
    with pytest.raises(ValueError, match="kernel choice 'fastest'"):
        compile_planned(trace(lambda x: x + 1, torch.randn(3)), "cpu", choose="fastest")


# Other processes: no OpenMP, the disk cache -----------------------------------------------------

def _run_python(code: str, **env) -> dict:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
               **env}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_native_kernels_load_no_openmp_runtime_of_their_own(tmp_path):
    """The cpu target runs threads on torch's libgomp only (gomp.py): FASTC_OPENMP_LIB="" (the BCQ
    kernels' switch) changes nothing, no libiomp5 is loaded, a model matches eager, and a kernel
    big enough for the parallel schedule gives the serial code's values."""
    result = _run_python("""
        import json, torch, model_zoo
        from fastc.report import REPORTS
        from fastc.kernels.openmp import openmp_library
        options = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise",
                   "disable": "fuse-product-epilogues"}
        model, inputs = model_zoo.build("mlp")
        model.eval()
        with torch.no_grad():
            err = (torch.compile(model, backend="fastc", options=options)(**inputs) - model(**inputs)).abs().max()
        big = torch.randn(1100, 1024)   # over a million elements: the heuristic picks threads
        f = lambda x: (x * 2 + 1).relu()
        big_err = (torch.compile(f, backend="fastc", options=options)(big) - f(big)).abs().max()
        print(json.dumps({"omp": openmp_library(), "err": err.item(), "big_err": big_err.item(),
                          "maps": open("/proc/self/maps").read().count("libiomp5"),
                          "generated": [len(r.generated_kernels) for r in REPORTS],
                          "aten": [k for r in REPORTS for k in r.aten_kernels]}))
    """, FASTC_OPENMP_LIB="", FASTC_CACHE_DIR=str(tmp_path))
    assert result["omp"] is None and result["maps"] == 0, result
    assert result["err"] < 1e-4 and result["big_err"] == 0, result
    assert all(result["generated"]) and not result["aten"], result


def test_disk_cache_serves_a_fresh_process(_private_kernel_cache):
    """A graph compiled here leaves its lowered modules under <cache>/cpu; a fresh process
    compiling the same model loads them (no MLIR pass pipeline run) and matches eager.

    The cache key covers a hash of fastc's codegen sources; the child is given this process's,
    so an edit of the tree while the tests run cannot turn the hit into a miss."""
    from fastc.codegen.cache import _codegen_hash
    model, inputs = model_zoo.build("mlp")
    model.eval()
    start = len(REPORTS)
    with torch.no_grad():
        torch.testing.assert_close(compiled(model)(**inputs), model(**inputs), rtol=1e-5, atol=1e-5)
    assert_native(REPORTS[start:])
    entries = sorted((_private_kernel_cache / "cpu").glob("*.mlir"))
    assert entries, list(_private_kernel_cache.rglob("*"))
    stamps = {p: p.stat().st_mtime_ns for p in entries}
    result = _run_python("""
        import json, torch, model_zoo
        from fastc.codegen import cache
        from fastc.codegen.cpu import module_cache
        from fastc.report import REPORTS
        cache._codegen_hash = lambda: "%s"
        hits, stores = [], []
        load, store = module_cache.load, module_cache.store

        def counted_load(key):
            text = load(key)
            if text is not None:
                hits.append(key)
            return text

        def counted_store(key, text):
            stores.append(key)
            store(key, text)
        module_cache.load, module_cache.store = counted_load, counted_store
        model, inputs = model_zoo.build("mlp")
        model.eval()
        options = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise",
                   "disable": "fuse-product-epilogues"}
        with torch.no_grad():
            err = (torch.compile(model, backend="fastc", options=options)(**inputs) - model(**inputs)).abs().max()
        print(json.dumps({"hits": len(hits), "stores": len(stores), "err": err.item(),
                          "generated": [len(r.generated_kernels) for r in REPORTS]}))
    """ % _codegen_hash(), FASTC_CACHE_DIR=str(_private_kernel_cache))
    assert result["hits"] >= 1 and result["stores"] == 0, result
    assert result["err"] < 1e-5 and all(result["generated"]), result
    assert sorted((_private_kernel_cache / "cpu").glob("*.mlir")) == entries
    assert all(p.stat().st_mtime_ns == stamps[p] for p in entries)
