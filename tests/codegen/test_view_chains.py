"""Views between kernels as one step: chains of view ops made in one call (codegen/view_chains.py),
compared with eager: values, sizes, strides and aliasing, and inputs in other layouts."""
import torch

from codegen_cases import trace


def _runner(fn, *args):
    from fastc.codegen.wrapper import compile_planned
    run, _ = compile_planned(trace(fn, *args), "cpu")
    return run


def _same_view(actual, expected):
    assert actual.shape == expected.shape and actual.stride() == expected.stride()
    assert torch.equal(actual, expected)


def attention_views(x, w):
    q = torch.mm(x, w)                                  # (16, 32)
    heads = q.view(2, 8, 32).view(2, 8, 4, 8).permute(0, 2, 1, 3)
    back = heads.permute(0, 2, 1, 3).reshape(16, 32)    # permute, then view: contiguous again
    return heads * 2, back + 1, q[:, 8:16].t()


def test_view_chains_are_one_step_each_and_match_eager():
    x, w = torch.randn(16, 8), torch.randn(8, 32)
    run = _runner(attention_views, x, w)
    code = run.module.code
    assert code.count("view_chains") == 3, code   # heads, back (one chain each) and the slice + t
    for a, e in zip(run(x, w), attention_views(x, w)):
        _same_view(a, e)


def test_a_chain_returns_a_view_of_its_root():
    def f(x):
        y = x + 1
        return y, y.unsqueeze(0).transpose(1, 2).select(0, 0)
    x = torch.randn(3, 5)
    y, v = _runner(f, x)(x)
    assert v.data_ptr() == y.data_ptr() and v.stride() == (1, 5)
    _same_view(v, f(x)[1])


def test_an_input_in_another_layout_runs_the_chain_op_by_op():
    def f(x):
        return x.permute(1, 0).select(0, 2).unsqueeze(1)
    x = torch.randn(4, 6)
    run = _runner(f, x)
    other = torch.randn(6, 4).t()         # the same sizes, transposed strides
    out = run(other)
    out = out[0] if isinstance(out, (tuple, list)) else out
    _same_view(out, f(other))
    _same_view(run(x)[0] if isinstance(run(x), (tuple, list)) else run(x), f(x))


def test_an_intermediate_view_read_by_an_op_is_made_too():
    def f(x):
        v = x.view(4, 6)
        return v.sum(0), v.t().contiguous()
    x = torch.randn(24)
    run = _runner(f, x)
    for a, e in zip(run(x), f(x)):
        assert torch.allclose(a, e)


def test_slices_with_offsets_and_expands():
    def f(x):
        return x[1:, 2:].expand(2, 3, 2), x.select(1, 3)[1:]
    x = torch.randn(4, 4)
    run = _runner(f, x)
    for a, e in zip(run(x), f(x)):
        _same_view(a, e)
        assert a.storage_offset() == e.storage_offset()


def test_complex_views_run_their_ops():
    def f(x):
        return x.conj().t(), x.t()
    x = torch.randn(3, 4, dtype=torch.complex64)
    run = _runner(f, x)
    assert "view_chains" not in run.module.code
    for a, e in zip(run(x), f(x)):
        assert torch.equal(a.resolve_conj(), e.resolve_conj())
