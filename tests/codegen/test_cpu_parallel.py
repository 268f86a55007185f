"""Native CPU kernels on torch's own threads: a kernel split by rows (codegen/cpu/split.py), its
chunks run through torch's libgomp (codegen/cpu/gomp.py), is what Schedule(parallel=True) runs.

Checked here: which kernels split (the decision, from the ops: never from timings), that a split
kernel's values are the serial kernel's bit for bit (and eager's within rounding), that the
chunks run on the threads of the team (chunk c on thread c), with one thread too, from two Python
threads at once, that nothing but torch's libgomp is loaded and no thread is started beyond
its pool, and that the parallel schedule reaches the chooser through torch.compile.
"""
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from codegen_cases import mark, trace

pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _two_threads():
    """Two threads while a test runs (what splits in two), whatever the machine; restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def _kernel(fn, *args, kind="reduction"):
    """The one planned kernel of `fn` (all its ops) and its inputs in kernel order."""
    from fastc.ir.kernel_plan import KernelPlan
    gm = mark(trace(fn, *args), kind)
    (kernel,) = KernelPlan.of(gm).kernels
    by_node = dict(zip([n for n in gm.graph.nodes if n.op == "placeholder"], args))
    return kernel, [by_node[n] for n in kernel.inputs]


def _compiled(fn, *args, kind="reduction"):
    from fastc.codegen.cpu.build import compile_kernels
    kernel, inputs = _kernel(fn, *args, kind=kind)
    made, failed = compile_kernels([kernel])
    assert not failed and kernel.id in made, failed
    return made[kernel.id], inputs


def _same_bits(a, b) -> bool:
    """Same shape, strides, dtype and bits (NaN payloads and signed zeros included)."""
    if a.shape != b.shape or a.dtype != b.dtype or a.stride() != b.stride():
        return False
    if a.is_floating_point():
        as_int = {2: torch.int16, 4: torch.int32, 8: torch.int64}[a.element_size()]
        return torch.equal(a.contiguous().view(as_int), b.contiguous().view(as_int))
    return torch.equal(a, b)


def _decision(fn, *args, chunks=2):
    from fastc.codegen.cpu.split import row_split
    kernel, _ = _kernel(fn, *args)
    return row_split(kernel, chunks)


# Which kernels split ------------------------------------------------------------------------------

SPLIT = {
    "layer_norm": (lambda x, w, b: F.layer_norm(x, (64,), w, b), lambda: (torch.randn(32, 64), torch.randn(64),
                                                                          torch.randn(64))),
    "rms_norm": (lambda x, w: x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w,
                 lambda: (torch.randn(4, 16, 24), torch.randn(24))),
    "softmax_last": (lambda x: torch.softmax(x * 0.5, -1), lambda: (torch.randn(48, 40),)),
    "gelu_3d": (lambda x: F.gelu(x), lambda: (torch.randn(4, 6, 50),)),
    "broadcast_row": (lambda x, y: (x + y).relu(), lambda: (torch.randn(10, 7), torch.randn(1, 7))),
    "view_then_add": (lambda x, r: x.view(4, 8, 12) + r, lambda: (torch.randn(32, 12), torch.randn(4, 8, 12))),
    "view_regrouping_rows": (lambda x: (x * 2).view(16, 24).exp(), lambda: (torch.randn(8, 4, 12),)),
    "transposed_input": (lambda x, y: x * y + 1, lambda: (torch.randn(30, 20).t(), torch.randn(30))),
    "permute_keeps_dim0": (lambda x: x.permute(0, 2, 1) * 3, lambda: (torch.randn(6, 5, 4),)),
    "expand_row": (lambda x, v: x + v.expand(8, 9), lambda: (torch.randn(8, 9), torch.randn(1, 9))),
    "two_outputs": (lambda x, r: ((x + r), F.layer_norm(x + r, (16,))),
                    lambda: (torch.randn(12, 16), torch.randn(12, 16))),
}

NOT_SPLIT = {
    "sum_over_dim0": (lambda x: x.sum(0), lambda: (torch.randn(8, 6),), "not computed row by row"),
    "softmax_over_dim0": (lambda x: torch.softmax(x, 0), lambda: (torch.randn(8, 6),), "not computed row by row"),
    "transpose_dim0": (lambda x: x.t() * 2, lambda: (torch.randn(8, 6),), "not computed row by row"),
    "permute_moves_dim0": (lambda x: x.permute(1, 0, 2) + 1, lambda: (torch.randn(4, 6, 2),), "not computed row by row"),
    "unsqueeze_dim0": (lambda x: x.unsqueeze(0) + 1, lambda: (torch.randn(8, 6),), "has 1 row"),
    "view_to_one_row": (lambda x: x.view(1, 48) * 2, lambda: (torch.randn(8, 6),), "has 1 row"),
    "uneven_rows": (lambda x: x * 2, lambda: (torch.randn(7, 6),), "7 rows do not divide into 2 to 2 chunks"),
    "one_row": (lambda x: F.layer_norm(x, (6,)), lambda: (torch.randn(1, 6),), "has 1 row"),
    "mean_of_everything": (lambda x: x - x.mean(), lambda: (torch.randn(8, 6),), "not computed row by row"),
    "row_mixing_broadcast": (lambda x: x * x.sum(0), lambda: (torch.randn(8, 6),), "not computed row by row"),
}


@pytest.mark.parametrize("name", sorted(SPLIT))
def test_kernels_computed_row_by_row_split(name):
    fn, make = SPLIT[name]
    decision = _decision(fn, *make())
    assert not isinstance(decision, str), decision
    assert decision.chunks == 2


@pytest.mark.parametrize("name", sorted(NOT_SPLIT))
def test_kernels_that_read_other_rows_do_not_split(name):
    fn, make, why = NOT_SPLIT[name]
    decision = _decision(fn, *make())
    assert isinstance(decision, str) and why in decision, decision


def test_chunks_are_the_largest_divisor_of_the_rows_up_to_the_threads():
    from fastc.codegen.cpu.split import row_split
    kernel, _ = _kernel(lambda x: x * 2, torch.randn(8, 4))
    assert row_split(kernel, 16).chunks == 8 and row_split(kernel, 3).chunks == 2
    kernel, _ = _kernel(lambda x: (x + 1).view(12, 2), torch.randn(6, 4))   # rows 6 and 12
    assert row_split(kernel, 4).chunks == 3


def test_which_inputs_split():
    """Rows of x split; the broadcast bias (1, 7) and the layer norm's weight are passed whole."""
    decision = _decision(lambda x, b, w: F.layer_norm(x + b, (7,), w), torch.randn(10, 7), torch.randn(1, 7),
                         torch.randn(7))
    assert decision.split_inputs == [True, False, False]
    assert decision.input_rows == [5, None, None] and decision.output_rows == [5]


def test_dynamic_shapes_do_not_split():
    from fastc.codegen.cpu.split import row_split
    from fastc.ir.kernel_plan import KernelPlan
    gm = mark(trace(lambda x: x * 2, torch.randn(8, 4), symbolic=True), "pointwise")
    (kernel,) = KernelPlan.of(gm).kernels
    assert "symbolic size" in row_split(kernel, 2)


def test_one_thread_does_not_split():
    torch.set_num_threads(1)
    native, inputs = _compiled(lambda x: F.gelu(x), torch.randn(64, 1100))
    assert native.split.split is None and "one thread" in native.split.text()
    from fastc.codegen.cpu.build import PARALLEL, SERIAL
    assert native.entry(PARALLEL) is native.entry(SERIAL)
    (out,) = native.run(*inputs, schedule=PARALLEL)
    torch.testing.assert_close(out, F.gelu(inputs[0]), atol=1e-6, rtol=1e-5)


# Values: the serial kernel's, bit for bit ---------------------------------------------------------

VALUES = {
    **{name: SPLIT[name] for name in ("layer_norm", "rms_norm", "softmax_last", "gelu_3d", "broadcast_row",
                                        "view_then_add", "view_regrouping_rows", "transposed_input",
                                        "permute_keeps_dim0", "expand_row", "two_outputs")},
    "big_layer_norm": (lambda x, w, b: F.layer_norm(x, (768,), w, b),
                       lambda: (torch.randn(256, 768), torch.randn(768), torch.randn(768))),
    "big_gelu": (lambda x: F.gelu(x), lambda: (torch.randn(8, 32, 3072),)),
    "big_softmax": (lambda x: torch.softmax(x, -1), lambda: (torch.randn(8 * 12 * 32, 128),)),
    "tanh_gelu": (lambda x: F.gelu(x, approximate="tanh") * 2, lambda: (torch.randn(64, 40),)),
    "int_and_bool": (lambda x, y: torch.where(x > 0, x * y, y - 1), lambda: (torch.randint(-5, 5, (16, 9)),
                                                                          torch.randint(-5, 5, (16, 9)))),
    "float64": (lambda x: torch.softmax(x, -1).sqrt(), lambda: (torch.randn(20, 33, dtype=torch.float64),)),
    "float16": (lambda x: (x * 2 + 1).relu(), lambda: (torch.randn(24, 40).half(),)),
    "non_contiguous_output": (lambda x: (x + 1).permute(0, 2, 1), lambda: (torch.randn(6, 5, 4),)),
}


@pytest.mark.parametrize("name", sorted(VALUES))
def test_split_values_equal_serial_bitwise(name):
    from fastc.codegen.cpu.build import PARALLEL, SERIAL
    fn, make = VALUES[name]
    args = make()
    native, inputs = _compiled(fn, *args)
    assert native.split.split is not None, native.split.text()
    assert native.entry(PARALLEL) is not native.entry(SERIAL)
    serial = native.run(*inputs, schedule=SERIAL)
    split = native.run(*inputs, schedule=PARALLEL)
    bound = native.bound(PARALLEL)(*inputs) if native.bound(PARALLEL) else split
    expected = fn(*args)
    expected = expected if isinstance(expected, tuple) else (expected,)
    for s, p, b, e in zip(serial, split, bound, expected):
        assert p.shape == e.shape and p.dtype == e.dtype
        assert _same_bits(p, s) and _same_bits(b, s), (p - s).abs().max()
        tol = {torch.float16: 1e-3, torch.float64: 1e-12}.get(e.dtype, 1e-5) if e.is_floating_point() else 0
        torch.testing.assert_close(p, e, atol=tol, rtol=tol)


def test_split_kernel_at_one_thread_runs_every_chunk():
    """Built for two chunks, called with one thread: the chunks run one after the other."""
    from fastc.codegen.cpu.build import PARALLEL, SERIAL
    native, inputs = _compiled(lambda x: torch.softmax(x, -1), torch.randn(64, 50))
    serial = native.run(*inputs, schedule=SERIAL)
    torch.set_num_threads(1)
    assert torch.equal(native.run(*inputs, schedule=PARALLEL)[0], serial[0])


def test_two_python_threads_call_one_split_kernel():
    from fastc.codegen.cpu.build import PARALLEL
    native, _ = _compiled(lambda x, w: F.layer_norm(x, (96,), w) * 2, torch.randn(128, 96), torch.randn(96))
    calls = {i: (torch.randn(128, 96), torch.randn(96)) for i in range(4)}
    expected = {i: F.layer_norm(x, (96,), w) * 2 for i, (x, w) in calls.items()}
    barrier, errors = threading.Barrier(len(calls)), []

    def work(i):
        try:
            barrier.wait()
            for _ in range(200):
                (out,) = native.run(*calls[i], schedule=PARALLEL)
                torch.testing.assert_close(out, expected[i], atol=1e-5, rtol=1e-5)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
    threads = [threading.Thread(target=work, args=(i,)) for i in calls]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]


# The chunks run on the team of torch's OpenMP runtime --------------------------------------------

PROBE = """
  llvm.func @_mlir_ciface_probe_rows(%out: !llvm.ptr) {
    %d = llvm.load %out : !llvm.ptr -> !llvm.struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>
    %p = llvm.extractvalue %d[1] : !llvm.struct<(ptr, ptr, i64, array<1 x i64>, array<1 x i64>)>
    %t = llvm.call @omp_get_thread_num() : () -> i32
    %t64 = llvm.sext %t : i32 to i64
    llvm.store %t64, %p : i64, !llvm.ptr
    llvm.return
  }
"""


def test_chunk_c_runs_on_thread_c_of_the_team():
    """The trampoline with a probe as the chunk's code: each chunk writes the OpenMP thread number
    it runs on into its row. Two threads: chunks 0..3 on threads 0, 1, 0, 1; one thread: all 0."""
    from torch_mlir import ir

    from fastc.codegen.cpu import gomp, runtime
    from fastc.codegen.cpu.stages import with_trampolines
    assert gomp.library() is not None and os.path.basename(gomp.library()).startswith("libgomp")
    context = ir.Context()
    module = ir.Module.parse("module {\n" + gomp.DECLARATIONS + PROBE + "}\n", context)
    text = gomp.DECLARATIONS + gomp.trampoline("probe", "_mlir_ciface_probe_rows", [("tensor", 1, 1, 8)], 4)
    engine = runtime.execution_engine(with_trampolines(module, text), [])
    fn = runtime.entry_point(engine, "probe", gomp.entry_symbol("probe"))
    arguments = runtime.Arguments([("tensor", 1)])
    out = torch.full((4,), -1, dtype=torch.int64)
    arguments.call(fn, [out])
    assert out.tolist() == [0, 1, 0, 1]
    torch.set_num_threads(1)
    arguments.call(fn, [out])
    assert out.tolist() == [0, 0, 0, 0]


def _run_python(code: str, **env) -> dict:
    environ = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
               **env}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=environ, cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_compiled_model_uses_torchs_pool_and_no_other_runtime(tmp_path):
    """In a fresh process: a model whose big kernels run split (kernel_choice generated: the
    heuristic sends them to threads) matches eager, loads no OpenMP runtime but torch's libgomp,
    and its split kernels start no thread beyond the pool ATen's ops started."""
    result = _run_python("""
        import json, os, torch
        import torch.nn.functional as F
        import fastc
        torch.set_num_threads(2)
        def f(x, w, b):
            return F.gelu(F.layer_norm(x, (768,), w, b)) * 2
        x, w, b = torch.randn(2048, 768), torch.randn(768), torch.randn(768)
        options = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise"}
        c = torch.compile(f, backend="fastc", options=options)
        out = c(x, w, b)
        torch.randn(2048, 2048).exp()          # an ATen op on two threads: its pool exists
        before = set(os.listdir("/proc/self/task"))
        for _ in range(20):
            out = c(x, w, b)
        after = set(os.listdir("/proc/self/task"))
        maps = open("/proc/self/maps").read()
        report = fastc.reports()[-1]
        print(json.dumps({"err": (out - f(x, w, b)).abs().max().item(),
                          "new_threads": len(after - before),
                          "iomp": maps.count("libiomp5") + maps.count("libomp.so"),
                          "gomp": sorted({l.split()[-1] for l in maps.splitlines() if "libgomp" in l}),
                          "decisions": dict(report.decisions)}))
    """, FASTC_CACHE_DIR=str(tmp_path), FASTC_TUNING="heuristic")  # the rules decide, not a noisy timing
    assert result["err"] < 1e-4, result
    assert result["iomp"] == 0 and len(result["gomp"]) == 1 and "torch" in result["gomp"][0], result
    assert result["new_threads"] == 0, result
    assert any("threads" in d for d in result["decisions"].values()), result


def test_measured_choice_times_the_split_kernel():
    """kernel_choice measure: a kernel that splits, over 2^15 elements, has its parallel entry up
    front, and the chooser times it next to ATen and the serial code (whichever wins)."""
    from fastc.codegen.schedule import Schedule
    from fastc.codegen.wrapper import compile_planned
    from fastc.costmodel import ATEN

    def f(x):
        return torch.softmax(x * 2, -1)
    x = torch.randn(512, 256)
    run, info = compile_planned(mark(trace(f, x), "reduction"), "cpu", strict=True, choose="measure")
    for _ in range(2):
        out = run(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        torch.testing.assert_close(out, f(x), atol=1e-6, rtol=1e-5)
    parallel = [r for r in info.measurements if r["candidate"] != ATEN and Schedule(**r["candidate"]).parallel]
    serial = [r for r in info.measurements if r["candidate"] != ATEN and not Schedule(**r["candidate"]).parallel]
    assert parallel and serial and any(r["candidate"] == ATEN for r in info.measurements), info.measurements


def test_a_split_kernel_dumps_its_chunk_kernel_and_both_entry_points(tmp_path):
    """With a debug dir: the chunk kernel's stages as <kernel>.rows.NN-*, the build's as usual,
    and the lowered module holds the serial and the parallel entry points (GOMP_parallel)."""
    torch._dynamo.reset()
    fn, x = (lambda x: torch.softmax(x * 0.5, -1)), torch.randn(8, 6)
    options = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise", "debug_dir": str(tmp_path)}
    torch.testing.assert_close(torch.compile(fn, backend="fastc", options=options)(x), fn(x))
    (folder,) = tmp_path.glob("graph_*")
    cpu = folder / "cpu"
    (name,) = {p.name.split(".")[0] for p in cpu.iterdir()}
    names = {p.name for p in cpu.iterdir()}
    assert {f"{name}.rows.{s}" for s in ("00-fx.fx", "01-legal-fx.fx", "02-torch.mlir", "03-linalg.mlir",
                                          "04-fixed.mlir")} <= names, names
    lowered = (cpu / f"{name}.08-llvm.serial.mlir").read_text()
    assert f"@_mlir_fastc_rows_{name}(" in lowered and f"@_mlir_fastc_rows_serial_{name}(" in lowered
    assert "llvm.call @GOMP_parallel" in lowered and f"@_mlir_ciface_{name}_rows(" in lowered
    assert "split into 2 chunks of rows" in (folder / f"kernel_{name}.mlir").read_text()


def test_a_model_with_frozen_weights_splits_its_kernels(tmp_path):
    """Weights frozen into constants (the kernels' get_attr inputs) are passed whole; the kernels
    split, and the model matches eager."""
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.LayerNorm(64), torch.nn.GELU()).eval()
    x = torch.randn(256, 64)
    options = {"target": "cpu", "kernel_choice": "generated", "on_error": "raise", "debug_dir": str(tmp_path)}
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model, backend="fastc", options=options)(x), model(x),
                                   atol=1e-5, rtol=1e-5)
    sources = [p.read_text() for p in tmp_path.glob("graph_*/kernel_*.mlir")]
    assert sources and all("split into 2 chunks of rows" in s for s in sources), sources


def test_every_planned_op_of_the_table_split_equals_serial():
    """Every kernel of the op table's cases (tests/test_op_table.py) on the cpu target: those that
    split give the same bits on threads as on one thread, and eager's values; which split is
    counted (most do: the cases are row-wise or pointwise)."""
    from test_op_table import _compare, eager_values, plan

    from fastc.codegen.cpu import compile_kernels
    from fastc.codegen.cpu.build import PARALLEL, SERIAL
    torch.set_num_threads(6)   # the cases have 3 or 5 rows: 3 or 5 chunks (the fixture restores)
    g, kernels, _ = plan("cpu")
    values = eager_values(g)
    made, _ = compile_kernels(kernels)
    mistakes, split = [], 0
    for k in kernels:
        native = made.get(k.id)
        if native is None or native.split.split is None:
            continue
        split += 1
        inputs = [values[n] for n in k.inputs]
        serial, parallel = native.run(*inputs, schedule=SERIAL), native.run(*inputs, schedule=PARALLEL)
        for node, s, p in zip(k.outputs, serial, parallel):
            if not _same_bits(s, p):
                mistakes.append(f"{k.name} {node.name}: split differs from serial")
        _compare(k, g, values, parallel, mistakes)
    assert split > len(kernels) // 2, f"{split} of {len(kernels)} kernels of the op table split"
    assert not mistakes, "\n".join(mistakes)
