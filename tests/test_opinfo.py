"""PyTorch's OpInfo database through fastc: each op's first CPU float32 sample, compiled vs eager.

As Inductor's test_torchinductor_opinfo.py does: every op in `op_db` that supports float32 on CPU
runs its first sample input eagerly and through `torch.compile(backend="fastc")`, and the outputs
must agree. Ops that use the random number generator (a `nondeterministic_seeded` ATen op runs
while the op runs eagerly) or return uninitialized memory are compared by shape and dtype only; a
sample that fails eagerly (the CUDA-only jiterator ops) is skipped. With FASTC_OPINFO_GRAD=1 the
gradients of the first requires-grad sample are swept as well (forward and backward graphs).

Two more forward sweeps force planned kernels through code generation: generated Triton (run by
Triton's interpreter) and native CPU code (torch-mlir, MLIR, LLVM) with kernel_choice="generated",
so the native code runs rather than whichever of it and ATen measures faster. A kernel the
generator cannot lower (Unsupported) runs as ATen and is recorded; any other failure raises.

Expected failures live in one table, tests/opinfo_expected_failures.py, each with its reason; an
op in the table is xfail(strict=True), so an op that starts passing must leave the table.
bench/opinfo_sweep.py regenerates the table by sweeping with aot_eager and fastc.
"""
from __future__ import annotations

import os
import sys
import warnings

import pytest
import torch
import torch._dynamo
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from opinfo_expected_failures import EXPECTED_FAILURES  # noqa: E402

RTOL = ATOL = 1e-4
FASTC_OPTIONS = {"on_error": "raise"}


def swept_ops() -> list:
    """The OpInfos of op_db that support float32 on CPU, in op_db order."""
    from torch.testing._internal.common_methods_invocations import op_db
    return [op for op in op_db if torch.float32 in op.supported_dtypes("cpu")]


def op_key(op) -> str:
    """`name` or `name.variant`: the key of an op in the expected-failures table."""
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


# Ops whose output is uninitialized memory: compared by shape and dtype only.
UNINITIALIZED_OUTPUT = {"empty", "empty_like", "empty_permuted", "empty_strided", "new_empty",
                        "new_empty_strided"}


def first_sample(op, requires_grad: bool = False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return next(iter(op.sample_inputs("cpu", torch.float32, requires_grad=requires_grad)), None)


class _RngUse(TorchDispatchMode):
    """Notes whether any op that draws random numbers runs."""

    def __init__(self):
        super().__init__()
        self.used = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if torch.Tag.nondeterministic_seeded in getattr(func, "tags", ()):
            self.used = True
        return func(*args, **(kwargs or {}))


def _fresh(tree):
    """Copies of the sample's tensors: new leaves that keep `requires_grad` (an op may mutate)."""
    return tree_map(lambda x: x.detach().clone().requires_grad_(x.requires_grad)
                    if isinstance(x, torch.Tensor) else x, tree)


def _run(fn, sample, grad: bool):
    """fn on fresh copies of the sample; with `grad`, also the gradients of a weighted sum of the
    outputs with respect to every input that requires grad."""
    args, kwargs = _fresh(((sample.input, *sample.args), dict(sample.kwargs)))
    out = fn(*args, **kwargs)
    if not grad:
        return out
    leaves = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor) and x.requires_grad]
    outs = [o for o in tree_flatten(out)[0] if isinstance(o, torch.Tensor) and o.requires_grad]
    if not leaves or not outs:
        return out, None
    loss = 0
    for i, o in enumerate(outs):
        o = torch.view_as_real(o) if o.is_complex() else o
        loss = loss + (o * torch.randn(o.shape, generator=torch.Generator().manual_seed(i))).sum()
    grads = torch.autograd.grad(loss, leaves, allow_unused=True)
    return out, [g if g is not None else torch.zeros_like(x) for g, x in zip(grads, leaves)]


def _same(a, b) -> bool:
    try:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        return True
    except (AssertionError, TypeError, RuntimeError):
        return False


def _compare(actual, expected, random: bool, what: str = "output"):
    exp_leaves, exp_spec = tree_flatten(expected)
    act_leaves, act_spec = tree_flatten(actual)
    assert exp_spec == act_spec, f"{what} structure differs: {act_spec} vs eager {exp_spec}"
    for i, (a, e) in enumerate(zip(act_leaves, exp_leaves)):
        if isinstance(e, torch.Tensor) and random:
            assert isinstance(a, torch.Tensor), f"{what} {i}: {type(a).__name__}, eager gives a tensor"
            assert (a.shape, a.dtype) == (e.shape, e.dtype), \
                f"{what} {i}: {tuple(a.shape)} {a.dtype}, eager {tuple(e.shape)} {e.dtype}"
        else:
            torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL, equal_nan=True, check_stride=False,
                                       msg=lambda m, i=i: f"{what} {i}: {m}")


def check_op(op, backend: str = "fastc", grad: bool = False, options: dict | None = None) -> dict:
    """Runs the op's first float32 sample eagerly and compiled with `backend`; raises on a mismatch.
    With `grad`, the sample requires grad and the input gradients are compared as well.

    Returns what happened: whether the op is random (compared by shape), how many graphs the
    backend compiled and, for fastc, the planned kernels that ran generated code and those that
    ran as ATen with the reason ((kernel, reason) pairs).
    """
    if grad and not op.supports_autograd:
        pytest.skip("no autograd support")
    sample = first_sample(op, requires_grad=grad)
    if sample is None:
        pytest.skip("no float32 sample input")
    rng = _RngUse()
    try:
        with rng, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.manual_seed(0)
            expected = _run(op.op, sample, grad)
            torch.manual_seed(0)
            repeat = _run(op.op, sample, grad)
    except Exception as e:
        pytest.skip(f"the sample fails eagerly: {type(e).__name__}: {str(e)[:100]}")
    if grad and expected[1] is None:
        pytest.skip("no differentiable output")
    # Random ops, and ops that return uninitialized memory, are compared by shape and dtype only.
    random = rng.used or op.name in UNINITIALIZED_OUTPUT or not _same(expected, repeat)
    graphs = 0

    def counting_backend(gm, example_inputs):
        nonlocal graphs
        graphs += 1
        if backend == "fastc":
            from fastc import fastc_backend
            return fastc_backend(gm, example_inputs, options={**FASTC_OPTIONS, **(options or {})})
        return torch._dynamo.lookup_backend(backend)(gm, example_inputs)

    from fastc.report import REPORTS
    first_report = len(REPORTS)
    torch._dynamo.reset()
    compiled = torch.compile(op.op, backend=counting_backend, dynamic=False)
    # Data-dependent output shapes (nonzero, unique) and .item() stay in the graph (unbacked
    # sizes) instead of breaking it, so such ops reach the backend too.
    with warnings.catch_warnings(), torch._dynamo.config.patch(
            capture_scalar_outputs=True, capture_dynamic_output_shape_ops=True):
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        actual = _run(compiled, sample, grad)
    if grad:
        _compare(actual[0], expected[0], random)
        _compare(actual[1], expected[1], random, "gradient")
    else:
        _compare(actual, expected, random)
    reports = REPORTS[first_report:]
    aten = [tuple(k) for r in reports for k in r.aten_kernels]
    # A module torch-mlir accepted that then fails in the MLIR passes or LLVM is a bug, but the
    # native build records it as a fallback (ATen runs) instead of raising under on_error="raise".
    broken = [f"{kernel}: {reason}" for kernel, reason in aten if reason.startswith(BUILD_FAILED)]
    assert not broken, f"native build failed: {broken}"
    return {"random": random, "graphs": graphs,
            "generated": [k for r in reports for k in r.generated_kernels], "aten": aten}


#: How fastc.codegen.cpu.build words a kernel whose module failed in the MLIR passes or LLVM.
BUILD_FAILED = "MLIR/LLVM compilation failed"
GRAD_PREFIX = "grad:"
TRITON_PREFIX = "triton:"
CPU_PREFIX = "cpu:"
#: The native CPU sweep: generated code always runs (not measured against ATen).
CPU_OPTIONS = {"target": "cpu", "kernel_choice": "generated"}
#: Set FASTC_OPINFO_GRAD=1 to sweep gradients too (about as long again as the forward sweep).
SWEEP_GRAD = os.environ.get("FASTC_OPINFO_GRAD", "0") == "1"


def _params(prefix: str = ""):
    params = []
    for op in swept_ops():
        key = prefix + op_key(op)
        marks = []
        if key in EXPECTED_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[key]))
        params.append(pytest.param(op, id=op_key(op), marks=marks))
    return params


def test_table_names_only_swept_ops():
    keys = {op_key(op) for op in swept_ops()}
    prefixes = (GRAD_PREFIX, TRITON_PREFIX, CPU_PREFIX)
    stale = sorted(k for k in EXPECTED_FAILURES
                   if next((k[len(p):] for p in prefixes if k.startswith(p)), k) not in keys)
    assert not stale, f"expected failures name ops that are not swept: {stale}"


@pytest.mark.parametrize("op", _params())
def test_op_matches_eager(op):
    try:
        check_op(op, "fastc")
    finally:
        torch._dynamo.reset()


@pytest.mark.skipif(not SWEEP_GRAD, reason="set FASTC_OPINFO_GRAD=1 to sweep gradients")
@pytest.mark.parametrize("op", _params(GRAD_PREFIX) if SWEEP_GRAD else [])
def test_op_gradients_match_eager(op):
    try:
        check_op(op, "fastc", grad=True)
    finally:
        torch._dynamo.reset()


@pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                    reason="needs TRITON_INTERPRET=1 before Python starts (scripts/test.sh sets it)")
@pytest.mark.parametrize("op", _params(TRITON_PREFIX))
def test_op_through_generated_triton_matches_eager(op):
    """The same sweep with planned kernels lowered to Triton (run by Triton's interpreter)."""
    try:
        check_op(op, "fastc", options={"target": "triton-interpret"})
    finally:
        torch._dynamo.reset()


@pytest.mark.parametrize("op", _params(CPU_PREFIX))
def test_op_through_native_cpu_code_matches_eager(op):
    """The same sweep with planned kernels compiled to native code (torch-mlir, MLIR, LLVM) and
    always run as such."""
    try:
        check_op(op, "fastc", options=CPU_OPTIONS)
    finally:
        torch._dynamo.reset()
