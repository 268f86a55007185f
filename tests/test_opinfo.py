"""PyTorch's OpInfo database through fastc: each op's first CPU float32 sample, compiled vs eager.

As Inductor's test_torchinductor_opinfo.py does: every op in `op_db` that supports float32 on CPU
runs its first sample input eagerly and through `torch.compile(backend="fastc")`, and the outputs
must agree. Ops that use the random number generator (a `nondeterministic_seeded` ATen op runs
while the op runs eagerly) are compared by shape and dtype only.

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


def first_sample(op):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return next(iter(op.sample_inputs("cpu", torch.float32, requires_grad=False)), None)


class _RngUse(TorchDispatchMode):
    """Notes whether any op that draws random numbers runs."""

    def __init__(self):
        super().__init__()
        self.used = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if torch.Tag.nondeterministic_seeded in getattr(func, "tags", ()):
            self.used = True
        return func(*args, **(kwargs or {}))


def _clone(tree):
    return tree_map(lambda x: x.clone() if isinstance(x, torch.Tensor) else x, tree)


def _call(op, sample):
    args, kwargs = _clone(((sample.input, *sample.args), dict(sample.kwargs)))
    return op.op(*args, **kwargs)


def _same(a, b) -> bool:
    try:
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
        return True
    except (AssertionError, TypeError, RuntimeError):
        return False


def _compare(actual, expected, random: bool):
    exp_leaves, exp_spec = tree_flatten(expected)
    act_leaves, act_spec = tree_flatten(actual)
    assert exp_spec == act_spec, f"output structure differs: {act_spec} vs eager {exp_spec}"
    for i, (a, e) in enumerate(zip(act_leaves, exp_leaves)):
        if isinstance(e, torch.Tensor) and random:
            assert isinstance(a, torch.Tensor), f"output {i}: {type(a).__name__}, eager gives a tensor"
            assert (a.shape, a.dtype) == (e.shape, e.dtype), \
                f"output {i}: {tuple(a.shape)} {a.dtype}, eager {tuple(e.shape)} {e.dtype}"
        else:
            torch.testing.assert_close(a, e, rtol=RTOL, atol=ATOL, equal_nan=True, check_stride=False,
                                       msg=lambda m, i=i: f"output {i}: {m}")


def check_op(op, backend: str = "fastc") -> dict:
    """Runs the op's first float32 sample eagerly and compiled with `backend`; raises on a mismatch.

    Returns what happened: whether the op draws random numbers and how many graphs were compiled.
    """
    sample = first_sample(op)
    if sample is None:
        pytest.skip("no float32 sample input")
    rng = _RngUse()
    try:
        torch.manual_seed(0)
        with rng, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = _call(op, sample)
            torch.manual_seed(0)
            repeat = _call(op, sample)
    except Exception as e:
        pytest.skip(f"the sample fails eagerly: {type(e).__name__}: {str(e)[:100]}")
    # Ops that draw random numbers, or return uninitialized memory (torch.empty), are compared
    # by shape and dtype only.
    random = rng.used or not _same(expected, repeat)
    graphs = 0

    def counting_backend(gm, example_inputs):
        nonlocal graphs
        graphs += 1
        if backend == "fastc":
            from fastc import fastc_backend
            return fastc_backend(gm, example_inputs, options=FASTC_OPTIONS)
        return torch._dynamo.lookup_backend(backend)(gm, example_inputs)

    torch._dynamo.reset()
    compiled = torch.compile(op.op, backend=counting_backend, dynamic=False)
    torch.manual_seed(0)
    # Data-dependent output shapes (nonzero, unique) and .item() stay in the graph (unbacked
    # sizes) instead of breaking it, so such ops reach the backend too.
    with warnings.catch_warnings(), torch._dynamo.config.patch(
            capture_scalar_outputs=True, capture_dynamic_output_shape_ops=True):
        warnings.simplefilter("ignore")
        args, kwargs = _clone(((sample.input, *sample.args), dict(sample.kwargs)))
        actual = compiled(*args, **kwargs)
    _compare(actual, expected, random)
    return {"random": random, "graphs": graphs}


def _params():
    params = []
    for op in swept_ops():
        key = op_key(op)
        marks = []
        if key in EXPECTED_FAILURES:
            marks.append(pytest.mark.xfail(strict=True, reason=EXPECTED_FAILURES[key]))
        params.append(pytest.param(op, id=key, marks=marks))
    return params


def test_table_names_only_swept_ops():
    keys = {op_key(op) for op in swept_ops()}
    stale = sorted(set(EXPECTED_FAILURES) - keys)
    assert not stale, f"expected failures name ops that are not swept: {stale}"


@pytest.mark.parametrize("op", _params())
def test_op_matches_eager(op):
    try:
        check_op(op, "fastc")
    finally:
        torch._dynamo.reset()
