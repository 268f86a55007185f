"""How the native CPU target calls its kernels (codegen/cpu/native_kernel.py, runtime.Arguments):
static kernels through `NativeKernel.bound`'s callable (the argument array filled once per thread,
only data pointers written per call), and elementwise kernels over contiguous N-D tensors run flat
(subgraph.flat_numel: 1-D of numel elements).

Results are compared with eager for kernels called many times, from several threads at once, with
inputs in layouts other than the compiled one; flat kernels on 4-D inputs of several shapes and
dtypes, and kernels that must keep their N-D loop nest (broadcasts, reductions, views, strided
inputs)."""
from __future__ import annotations

import ctypes
import sys
import threading

import pytest
import torch
import torch.fx as fx
import torch.nn.functional as F
from torch._subclasses.fake_tensor import FakeTensorMode

from codegen_cases import mark, trace
from fastc.codegen.errors import Unsupported
from fastc.ir.kernel_plan import KernelPlan

pytest.importorskip("torch_mlir", reason="the native CPU target needs torch-mlir")

aten = torch.ops.aten


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def planned(fn, *args, kind="pointwise"):
    """(runner, info, the NativeKernel) for `fn` traced with all its ops one planned kernel,
    compiled for the cpu target (generated code only; a failure raises)."""
    from fastc.codegen.wrapper import compile_planned
    gm = mark(trace(fn, *args), kind)
    run, info = compile_planned(gm, "cpu", choose="generated", strict=True)
    assert len(info.kernels) == 1 and not info.fallbacks, info.text()
    (g,) = run.generated.values()
    return run, info, g


def outputs(result):
    return result if isinstance(result, tuple) else (result,)


def assert_same(actual, expected, exact=False, strides=True):
    """Same shapes, dtypes and values (`exact`: bitwise); `strides`: the same layout too (not
    asked where the inputs arrive in another layout than the traced one: eager's result follows
    its inputs' layout, a compiled kernel's is fixed)."""
    for a, e in zip(outputs(actual), outputs(expected), strict=True):
        assert a.shape == e.shape and a.dtype == e.dtype, (a.shape, e.shape, a.dtype, e.dtype)
        assert not strides or a.stride() == e.stride(), (a.stride(), e.stride())
        if exact:
            assert torch.equal(a, e) or (a.isnan() == e.isnan()).all() and torch.equal(a.nan_to_num(), e.nan_to_num())
        else:
            tol = {torch.float16: 2e-3}.get(e.dtype, 1e-5)
            torch.testing.assert_close(a, e, atol=tol, rtol=tol, equal_nan=True)


def is_flat(g) -> bool:
    flat = [p.flat for p in g.params + g.out_params if p.kind == "tensor" and p.rank]
    assert all(flat) or not any(flat), (g.params, g.out_params)   # all or nothing
    return all(flat)


# Static kernels: the bound call ------------------------------------------------------------------

def test_a_settled_static_kernel_runs_its_bound_call_and_stays_right_over_many_calls():
    fn = lambda x, w, b: F.layer_norm(x, (32,), w, b) * 2 + 1  # noqa: E731
    args = (torch.randn(4, 6, 32), torch.randn(32), torch.randn(32))
    run, _, g = planned(fn, *args, kind="reduction")
    for i in range(50):
        x = torch.randn(4, 6, 32) * (i + 1)
        assert_same(run(x, *args[1:]), fn(x, *args[1:]))
    (call,) = run.calls.values()
    assert call._fast is not None and "data_ptr()" in call._fast.source   # settled on the bound call
    assert "buf[" in call._fast.source and ".stride()" not in call._fast.source  # contiguous inputs: no stride lists


def test_outputs_of_consecutive_calls_are_distinct_tensors():
    fn = lambda x: (x * 3).exp()  # noqa: E731
    x = torch.randn(5, 7)
    run, _, g = planned(fn, x)
    bound = g.bound()
    first, second = bound(x)[0], bound(x + 1)[0]
    assert first.data_ptr() != second.data_ptr()
    assert_same(first, fn(x))
    assert_same(second, fn(x + 1))


def test_two_threads_calling_one_kernel_get_their_own_results_bitwise():
    fn = lambda x, y: (x * y + 1).sigmoid() - y  # noqa: E731
    run, _, g = planned(fn, torch.randn(16, 33), torch.randn(16, 33))
    bound = g.bound()
    inputs = {t: [(torch.randn(16, 33), torch.randn(16, 33)) for _ in range(20)] for t in range(2)}
    expected = {t: [bound(*xy)[0] for xy in inputs[t]] for t in inputs}   # one thread, same inputs
    wrong, done = [], []

    def work(t):
        for _ in range(150):
            for xy, e in zip(inputs[t], expected[t]):
                if not torch.equal(bound(*xy)[0], e):
                    wrong.append(t)
        done.append(t)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # switch threads as often as possible
    try:
        threads = [threading.Thread(target=work, args=(t,)) for t in inputs]
        [t.start() for t in threads]
        [t.join() for t in threads]
    finally:
        sys.setswitchinterval(interval)
    assert sorted(done) == [0, 1] and not wrong
    for t in inputs:
        assert_same(expected[t][0], fn(*inputs[t][0]))


def test_a_non_contiguous_input_to_a_contiguous_kernel_is_copied_not_misread():
    fn = lambda x, w: F.layer_norm(x, (12,), w) + 1  # noqa: E731
    x, w = torch.randn(6, 12), torch.randn(12)
    _, _, g = planned(fn, x, w, kind="reduction")
    assert g.params[0].contiguous
    bound = g.bound()
    strided = torch.randn(12, 6).t()            # same shape, transposed layout
    sliced = torch.randn(6, 24)[:, ::2]           # every other column
    for arg in (strided, sliced):
        assert not arg.is_contiguous()
        assert_same(bound(arg, w)[0], fn(arg, w), strides=False)
        assert_same(g.run(arg, w)[0], fn(arg, w), strides=False)


def test_inputs_whose_strides_differ_from_the_compiled_ones():
    """A kernel compiled for a transposed input gets a contiguous one (copied into the compiled
    layout), and one compiled for a broadcast (stride 0) input gets real data (refused: the
    caller runs its ATen ops)."""
    fn = lambda x, y: x.t() * 2 + y  # noqa: E731
    x, y = torch.randn(5, 9), torch.randn(9, 5)
    _, _, g = planned(fn, x.t().contiguous().t(), y)   # x arrives as a transposed view
    bound = g.bound()
    assert g.params[0].strides == (1, 5) and ".stride() != S0" in g.bound().source
    for arg in (x, x.t().contiguous().t(), torch.randn(5, 18)[:, ::2]):
        assert_same(bound(arg, y)[0], fn(arg, y), strides=False)

    fb = lambda a, b: a * b  # noqa: E731
    a, b = torch.randn(4, 6), torch.randn(6)
    _, _, gb = planned(fb, a, b.expand(4, 6))
    assert gb.params[1].strides == (0, 1)
    assert_same(gb.bound()(a, b.expand(4, 6))[0], fb(a, b))
    with pytest.raises(Unsupported):
        gb.bound()(a, torch.randn(4, 6))


def test_scalar_arguments_of_a_static_kernel_are_written_per_call():
    graph = fx.Graph()
    a, s, i = graph.placeholder("a"), graph.placeholder("s"), graph.placeholder("i")
    m = graph.call_function(aten.mul.Tensor, (a, s))
    out = graph.call_function(aten.add.Tensor, (m, i))
    graph.output((out,))
    with FakeTensorMode():
        a.meta["val"], s.meta["val"], i.meta["val"] = torch.empty(3, 4, 5), 2.5, 3
        m.meta["val"] = aten.mul.Tensor(a.meta["val"], 2.5)
        out.meta["val"] = aten.add.Tensor(m.meta["val"], 3)
    for n in (m, out):
        n.meta.update(kernel=0, kernel_kind="pointwise")
    from fastc.codegen.wrapper import compile_planned
    run, info = compile_planned(fx.GraphModule({}, graph), "cpu", choose="generated", strict=True)
    (g,) = run.generated.values()
    assert [p.kind for p in g.params] == ["tensor", "float", "int"]
    x = torch.randn(3, 4, 5)
    for scale, shift in [(1.5, 7), (-0.25, -2), (3.0, 0)]:
        assert torch.equal(run(x, scale, shift)[0], x * scale + shift)
    assert g._bound, "run went through the bound call"
    assert "doubles[" in next(iter(g._bound.values())).source


def test_the_argument_array_is_filled_once_with_sizes_and_strides():
    from fastc.codegen.cpu.runtime import Arguments
    args = Arguments([("tensor", 2), ("int",), ("tensor", 1, "flat")], fixed=[((3, 4), (1, 3)), None, ((12,), (1,))])
    buf, doubles, packed = args.arrays()
    assert list(buf) == [0, 0, 0, 3, 4, 1, 3, 0, 0, 0, 0, 12, 1]
    assert args.pointer_slot(0) == 0 and args.pointer_slot(1) == 7 and args.pointer_slot(2) == 8
    # the packed pointers: tensors by a pointer to their descriptor's address, scalars to their slot
    pointers = (ctypes.c_void_p * 3).from_address(packed)
    base = ctypes.addressof(buf)
    assert ctypes.c_void_p.from_address(pointers[0]).value == base
    assert pointers[1] == base + 8 * 7
    # another thread gets its own arrays, filled the same way
    seen = []
    t = threading.Thread(target=lambda: seen.append(args.arrays()))
    t.start()
    t.join()
    assert ctypes.addressof(seen[0][0]) != base and list(seen[0][0]) == list(buf)
    with pytest.raises(ValueError):
        Arguments([("tensor", 2)], fixed=[((3,), (1,))])


# Flat pointwise kernels -------------------------------------------------------------------------

FLAT = {
    "gelu": (lambda x: F.gelu(x),),
    "gelu_tanh": (lambda x: F.gelu(x, approximate="tanh") + 1,),   # rewritten at stage 01 (LEGALIZE)
    "add_relu": (lambda x, y: (x + y).relu(),),
    "scalar_ops": (lambda x: (x * 0.5 + 1).clamp(-1, 2).sigmoid(),),
    "zero_dim_tensor": (lambda x, t: x * t + t.exp(),),
    "two_outputs": (lambda x, y: (x.tanh(), x * y - 1),),
    "where_compare": (lambda x, y: torch.where(x > y, x - y, y.abs()),),
}


def _flat_args(name, shape, dtype):
    x = torch.randn(shape).to(dtype)
    if name in ("gelu", "gelu_tanh", "scalar_ops"):
        return (x,)
    if name == "zero_dim_tensor":
        return (x, torch.tensor(0.75, dtype=dtype))
    return (x, torch.randn(shape).to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (8, 16, 7, 7), (3, 1, 5, 2), (4, 9)])
@pytest.mark.parametrize("name", sorted(FLAT))
def test_elementwise_kernels_over_contiguous_tensors_run_flat_and_match_eager(name, shape, dtype):
    (fn,) = FLAT[name]
    args = _flat_args(name, shape, dtype)
    run, _, g = planned(fn, *args)
    assert is_flat(g), (g.params, g.out_params)
    numel = torch.Size(shape).numel()
    assert all(p.shape == (numel,) for p in g.params + g.out_params if p.kind == "tensor" and p.rank)
    assert [tuple(s) for s in g.out_shapes] == [tuple(shape)] * len(g.out_shapes)
    for _ in range(3):
        args = _flat_args(name, shape, dtype)
        assert_same(run(*args), fn(*args))
    # a non-contiguous input of the same shape: copied, then run flat
    strided = (torch.randn(tuple(reversed(shape))).to(dtype).permute(*reversed(range(len(shape)))),) + args[1:]
    assert_same(g.bound()(*strided), fn(*strided), strides=False)


def test_integer_and_boolean_kernels_run_flat():
    fn = lambda i, j: ((i * 3 + j) % 7, (i > j) & (j > 0))  # noqa: E731
    args = (torch.randint(-50, 50, (2, 3, 8, 5), dtype=torch.int32), torch.randint(-50, 50, (2, 3, 8, 5), dtype=torch.int32))
    run, _, g = planned(fn, *args)
    assert is_flat(g)
    assert_same(run(*args), fn(*args), exact=True)


NOT_FLAT = {
    "broadcast": (lambda x, b: x + b, lambda: (torch.randn(2, 3, 4, 5), torch.randn(3, 1, 1)), "pointwise"),
    "trailing_broadcast": (lambda x, b: x * b, lambda: (torch.randn(2, 3, 4, 5), torch.randn(5)), "pointwise"),
    "reduction": (lambda x: torch.softmax(x, -1), lambda: (torch.randn(2, 3, 4, 5),), "reduction"),
    "view": (lambda x: (x * 2).permute(0, 2, 1, 3) + 1, lambda: (torch.randn(2, 3, 4, 5),), "pointwise"),
    "strided_input": (lambda x: x.exp(), lambda: (torch.randn(2, 5, 4, 3).transpose(1, 3),), "pointwise"),
    "channels_last": (lambda x: x.relu(), lambda: (torch.randn(2, 3, 4, 5).to(memory_format=torch.channels_last),),
                      "pointwise"),
    "one_dim": (lambda x: x.exp(), lambda: (torch.randn(60),), "pointwise"),
}


@pytest.mark.parametrize("name", sorted(NOT_FLAT))
def test_kernels_that_are_not_elementwise_over_one_contiguous_shape_keep_their_loop_nest(name):
    fn, make, kind = NOT_FLAT[name]
    args = make()
    run, _, g = planned(fn, *args, kind=kind)
    assert not any(p.flat for p in g.params + g.out_params)
    assert any(p.rank == args[0].dim() for p in g.params if p.kind == "tensor")
    assert_same(run(*args), fn(*args))


def test_flat_numel_decides_from_the_kernel_graph():
    from fastc.codegen.cpu.subgraph import flat_numel, kernel_graph
    gm = mark(trace(lambda x, y: (x * y).erf() + 1, torch.randn(2, 3, 4), torch.randn(2, 3, 4)), "pointwise")
    (k,) = KernelPlan.of(gm).kernels
    assert flat_numel(k) == 24
    kg = kernel_graph(k)
    vals = [n.meta["val"] for n in kg.graph.nodes if n.op != "output"]
    assert all(tuple(v.shape) == (24,) for v in vals), [v.shape for v in vals]
    assert "runs flat" in kg.meta["note"]
    # a full() with sizes inside: not elementwise over its inputs
    gm = mark(trace(lambda x: x + torch.full((2, 3, 4), 2.0), torch.randn(2, 3, 4)), "pointwise")
    (k,) = KernelPlan.of(gm).kernels
    assert flat_numel(k) is None


def test_the_stage_dump_shows_the_flat_graph(tmp_path):
    """Every kernel graph dumped (the kernel's own, or the chunk a parallel schedule runs) says it
    runs flat and is 1-D, and so is its linalg."""
    import re
    torch._dynamo.reset()
    fn = lambda x: F.gelu(x) * 2  # noqa: E731
    x = torch.randn(2, 4, 3, 5)
    out = torch.compile(fn, backend="fastc", options={"target": "cpu", "kernel_choice": "generated",
                                                       "on_error": "raise", "debug_dir": str(tmp_path)})(x)
    torch.testing.assert_close(out, fn(x))
    dumps = sorted(tmp_path.glob("graph_*/cpu/*.00-fx.fx"))
    assert dumps
    for fx_dump in dumps:
        text = fx_dump.read_text()
        note = re.match(r"# runs flat: its \((\d+), 4, 3, 5\) tensors as 1-D of (\d+) elements\n", text)
        assert note and int(note[2]) == int(note[1]) * 60, text
        numel = note[2]
        assert f"%in0: f32[{numel}]" in text and ", 4, 3, 5]" not in text, text
        linalg = fx_dump.with_name(fx_dump.name.replace("00-fx.fx", "03-linalg.mlir")).read_text()
        assert f"tensor<{numel}xf32>" in linalg and "x4x3x5xf32>" not in linalg
