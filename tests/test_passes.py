"""Each exact pass on small graphs: it rewrites what it should, and outputs stay equal to the
graph before the pass (and to eager PyTorch for the module-level cases)."""
import copy

import pytest
import torch
import torch.nn as nn
from torch._decomp import core_aten_decompositions
from torch.fx.experimental.proxy_tensor import make_fx

from fastc.ir import parse_graph, print_graph
from fastc.passes import (PASSES, CommonSubexpressions, PassContext, DeadCode, FoldBatchNorm, FoldConstants,
                          RemoveNoops, make_pass, parse_pipeline)


def _frozen_graph(module: nn.Module, *args):
    """The module's ATen graph with its parameters and buffers as constants (as fastc freezes)."""
    return make_fx(module.eval(), decomposition_table=core_aten_decompositions())(*args)


def _check(gm, p, args, expect_rewrites=None):
    before = gm(*args)
    rewrites = p.run(gm, PassContext())
    gm.graph.lint()
    gm.recompile()
    torch.testing.assert_close(gm(*args), before, rtol=1e-5, atol=1e-5)
    if expect_rewrites is not None:
        assert rewrites == expect_rewrites, print_graph(gm)
    return gm


def _ops(gm):
    return [str(n.target) for n in gm.graph.nodes if n.op == "call_function"]


def test_registry_names_every_pass():
    assert {"dead-code", "cse", "fold-constants", "fold-batchnorm", "remove-noops"} <= set(PASSES)
    for name, cls in PASSES.items():
        assert cls.__doc__ and len(cls.__doc__.strip()) > 40, f"{name} needs a docstring"


def test_pipeline_spec_parsing_and_errors():
    passes = parse_pipeline("dead-code, fold-constants{max_new_elements=7},cse")
    assert [p.name for p in passes] == ["dead-code", "fold-constants", "cse"]
    assert passes[1].max_new_elements == 7 and passes[1].spec() == "fold-constants{max_new_elements=7}"
    with pytest.raises(ValueError, match=r"unknown pass 'fold' \(valid: .*dead-code"):
        parse_pipeline("fold")
    with pytest.raises(ValueError, match=r"has no option 'limit' \(valid: max_new_elements\)"):
        make_pass("fold-constants", {"limit": "3"})
    with pytest.raises(ValueError, match="max_new_elements='x' is not valid"):
        parse_pipeline("fold-constants{max_new_elements=x}")


def test_dead_code_removes_unused_and_frees_constants():
    gm = parse_graph("""graph @g(%x: f32[4]) {
      %w: f32[4] = const dense<[1.0, 2.0, 3.0, 4.0]>
      %a: f32[4] = aten.mul.Tensor(%x, %w)
      %b: f32[4] = aten.neg.default(%x)
      return (%b,)
    }""")
    _check(gm, DeadCode(), (torch.randn(4),), expect_rewrites=2)
    assert _ops(gm) == ["aten.neg.default"] and not hasattr(gm, "w")


def test_cse_merges_repeated_subexpressions_of_a_traced_function():
    def fn(x):
        return torch.sin(x) * 2 + torch.sin(x) * 2
    gm = make_fx(fn)(torch.randn(5))
    _check(gm, CommonSubexpressions(), (torch.randn(5),), expect_rewrites=2)
    assert _ops(gm).count("aten.sin.default") == 1


def test_fold_constants_precomputes_weight_transforms():
    lin = nn.Linear(6, 3)
    gm = _frozen_graph(lin, torch.randn(2, 6))
    assert "aten.t.default" in _ops(gm) or "aten.permute.default" in _ops(gm)
    _check(gm, FoldConstants(), (torch.randn(2, 6),), expect_rewrites=1)
    assert _ops(gm) == ["aten.addmm.default"]
    torch.testing.assert_close(gm(torch.ones(2, 6)), lin(torch.ones(2, 6)))


@pytest.mark.parametrize("make", [
    lambda: nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5)),
    lambda: nn.Sequential(nn.Conv2d(4, 4, 3, groups=2, bias=False), nn.BatchNorm2d(4), nn.ReLU()),
    lambda: nn.Sequential(nn.Conv1d(3, 5, 3), nn.BatchNorm1d(5)),
    lambda: nn.Sequential(nn.Linear(6, 5), nn.BatchNorm1d(5)),
    lambda: nn.Sequential(nn.Linear(6, 5, bias=False), nn.BatchNorm1d(5, affine=False)),
], ids=["conv2d", "grouped-conv-no-bias", "conv1d", "linear", "linear-no-affine"])
def test_fold_batchnorm_matches_eager(make):
    torch.manual_seed(0)
    model = make().eval()
    for m in model.modules():
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
    conv = isinstance(model[0], (nn.Conv1d, nn.Conv2d))
    x = torch.randn(2, 3, 9) if isinstance(model[0], nn.Conv1d) else (
        torch.randn(2, model[0].in_channels, 6, 6) if conv else torch.randn(4, 6))
    gm = _frozen_graph(model, x)
    _check(gm, FoldBatchNorm(), (x,), expect_rewrites=1)
    DeadCode().run(gm, PassContext())
    gm.recompile()
    assert not any("batch_norm" in op for op in _ops(gm))
    torch.testing.assert_close(gm(x), model(x), rtol=1e-5, atol=1e-5)


def test_fold_batchnorm_leaves_training_batchnorm():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    x = torch.randn(2, 3, 4, 4)
    gm = make_fx(lambda x: model(x), decomposition_table=core_aten_decompositions())(x)
    assert FoldBatchNorm().run(gm, PassContext()) == 0


def test_remove_noops_keeps_outputs_equal():
    def fn(x):
        y = x.view(2, 3).permute(0, 1).contiguous() + 1
        return y.clone() * 2, x.reshape(3, 2)
    x = torch.randn(2, 3)
    gm = make_fx(fn, decomposition_table=core_aten_decompositions())(x)
    _check(gm, RemoveNoops(), (x,))
    assert "aten.permute.default" not in _ops(gm) and "aten.clone.default" not in _ops(gm)
    assert "aten.view.default" in _ops(gm)  # the real reshape to (3, 2)


def test_remove_noops_keeps_copy_of_an_input():
    gm = make_fx(lambda x: x.clone())(torch.randn(3))
    assert RemoveNoops().run(gm, PassContext()) == 0


def test_passes_are_frozen_dataclasses():
    p = FoldConstants()
    with pytest.raises(Exception):
        p.max_new_elements = 3  # options are fixed once made
    assert copy.copy(p) == p
