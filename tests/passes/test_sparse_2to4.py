"""sparse-2to4 and its op: two_four_mask keeps the 2 highest-scored of each 4 (known values),
fastc.linear_2to4's CPU implementation is F.linear and its fake one gives the shape (symbolic sizes
too), kernel_refusal's reasons (device, capability, dtype, shape), the CUDA implementation's cache
and dense fallback (run on CPU tensors), the refusal on CPU through torch.compile (output exact,
one warning, the reason in the report), and with the refusal patched away: the rewrite equals
eager with the masked weights (linear, mm and addmm forms), wanda scores and sensitivities on
known inputs, the budget keeps the cheap prefix under a user metric; on CUDA (capability 8.0+
only) the sparse kernel against the dense masked product."""
from __future__ import annotations

import copy
import gc
import logging

import pytest
import torch
import torch._dynamo
import torch.nn as nn
import torch.nn.functional as F

import fastc
from fastc.ir import parse_graph, print_graph
from fastc.kernels import semi_structured
from fastc.kernels.semi_structured import kernel_refusal, layout_refusal, two_four_mask
from fastc.passes import PassContext, make_pass
from fastc_eval.frozen_graph import capture

LINEAR_2TO4 = "fastc.linear_2to4.default"


@pytest.fixture
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


@pytest.fixture
def kernel_everywhere(monkeypatch):
    """The pass's one refusal decision made to say yes on CPU, so the rewrite can run here."""
    monkeypatch.setattr(semi_structured, "kernel_refusal", lambda weight: None)


def _groups_of_four_nonzeros(w: torch.Tensor) -> torch.Tensor:
    return (w != 0).reshape(w.shape[0], -1, 4).sum(-1)


# -- two_four_mask -------------------------------------------------------------------------------
def test_two_four_mask_known_values():
    scores = torch.tensor([[1.0, 4.0, 3.0, 2.0, 0.0, 0.5, 5.0, 5.0],
                           [1.0, 1.0, 1.0, 1.0, 0.0, 2.0, 2.0, 1.0],   # ties: the lower columns
                           [-1.0, -4.0, -3.0, -2.0, 9.0, 0.0, 0.0, 0.0]])
    want = torch.tensor([[0, 1, 1, 0, 0, 0, 1, 1],
                         [1, 1, 0, 0, 0, 1, 1, 0],
                         [1, 0, 0, 1, 1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(two_four_mask(scores), want)


def test_two_four_mask_keeps_two_of_four_and_the_largest():
    scores = torch.rand(64, 128, generator=torch.Generator().manual_seed(0))
    mask = two_four_mask(scores)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert (_groups_of_four_nonzeros(mask) == 2).all()
    groups, kept = scores.reshape(64, 32, 4), mask.reshape(64, 32, 4)
    smallest_kept = torch.where(kept, groups, torch.inf).min(-1).values
    largest_dropped = torch.where(kept, -torch.inf, groups).max(-1).values
    assert (smallest_kept >= largest_dropped).all()


def test_two_four_mask_needs_a_multiple_of_four():
    with pytest.raises(ValueError, match=r"shape \(2, 6\)"):
        two_four_mask(torch.ones(2, 6))


# -- the op --------------------------------------------------------------------------------------
def test_op_cpu_is_f_linear():
    g = torch.Generator().manual_seed(1)
    x, w, b = torch.randn(3, 5, 32, generator=g), torch.randn(16, 32, generator=g), torch.randn(16, generator=g)
    w = w * two_four_mask(w.abs())
    assert torch.equal(torch.ops.fastc.linear_2to4(x, w, b), F.linear(x, w, b))
    assert torch.equal(torch.ops.fastc.linear_2to4(x[0], w, None), F.linear(x[0], w))


def test_op_fake_shape_and_symbolic_sizes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    with FakeTensorMode():
        y = torch.ops.fastc.linear_2to4(torch.empty(7, 3, 32), torch.empty(16, 32), None)
    assert y.shape == (7, 3, 16)

    w, b = torch.randn(16, 32), torch.randn(16)
    f = torch.compile(lambda x: torch.ops.fastc.linear_2to4(x, w, b).relu(), backend="aot_eager",
                      dynamic=True, fullgraph=True)
    for rows in (3, 5, 9):
        x = torch.randn(rows, 32)
        assert torch.equal(f(x), F.linear(x, w, b).relu())
    torch.library.opcheck(torch.ops.fastc.linear_2to4.default, (torch.randn(4, 32), w, b),
                          test_utils=("test_schema", "test_faketensor", "test_aot_dispatch_static"))


# -- kernel_refusal ------------------------------------------------------------------------------
def test_refused_on_cpu_with_the_reason():
    reason = kernel_refusal(torch.zeros(64, 64, dtype=torch.float16))
    assert reason.startswith("weights on cpu: 2:4 semi-structured sparsity needs a kernel for it, which "
                             "exists only on CUDA")
    assert "compute capability 8.0+" in reason and "use prune-channels" in reason


def test_refused_on_old_cuda_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    reason = semi_structured.device_refusal(torch.device("cuda", 0))
    assert reason == ("CUDA device cuda:0 has compute capability 7.5: 2:4 sparse tensor cores need 8.0 "
                      "or newer (Ampere)")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert semi_structured.device_refusal(torch.device("cuda", 0)) is None


def test_dtype_and_shape_reasons():
    cusparselt = torch.sparse.SparseSemiStructuredTensorCUSPARSELT
    cutlass = torch.sparse.SparseSemiStructuredTensorCUTLASS
    assert layout_refusal((32, 32), torch.float16, cusparselt) is None
    assert layout_refusal((32, 32), torch.bfloat16, cusparselt) is None
    assert layout_refusal((32, 32), torch.float32, cusparselt) == \
        "float32 weights: cusparselt's 2:4 kernels take float8_e4m3fn, int8, float16, bfloat16"
    assert layout_refusal((24, 32), torch.float16, cusparselt) == \
        ("a 24 x 32 weight: cusparselt's 2:4 kernels for float16 need outputs a multiple of 16 and inputs "
         "a multiple of 16")
    assert layout_refusal((32, 8), torch.float16, cusparselt) is not None  # fewer inputs than 16
    assert layout_refusal((32, 32), torch.float32, cutlass) is None
    assert "a multiple of 32 and inputs a multiple of 32" in layout_refusal((32, 48), torch.float32, cutlass)
    assert "2-D weights" in layout_refusal((2, 32, 32), torch.float16, cusparselt)


def test_kernel_refusal_checks_the_layout_after_the_device(monkeypatch):
    monkeypatch.setattr(semi_structured, "device_refusal", lambda device: None)
    monkeypatch.setattr(semi_structured, "sparse_backend", lambda: torch.sparse.SparseSemiStructuredTensorCUSPARSELT)
    assert kernel_refusal(torch.zeros(32, 64, dtype=torch.float16)) is None
    assert kernel_refusal(torch.zeros(32, 64)).startswith("float32 weights")
    assert kernel_refusal(torch.zeros(32, 40, dtype=torch.float16)).startswith("a 32 x 40 weight")


# -- the CUDA implementation's cache and fallback, on CPU tensors --------------------------------
def test_compressed_once_per_tensor_and_version(monkeypatch):
    made = []
    monkeypatch.setattr(semi_structured, "_compress", lambda w: made.append(w) or w.clone())
    w = torch.randn(16, 32)
    first = semi_structured.sparse_weight(w)
    assert semi_structured.sparse_weight(w) is first and len(made) == 1
    w.mul_(2)  # changed in place: a new version, compressed again
    again = semi_structured.sparse_weight(w)
    assert len(made) == 2 and torch.equal(again, w)
    other = w.clone()  # another tensor with the same values: its own entry
    semi_structured.sparse_weight(other)
    assert len(made) == 3
    key = id(other)
    del other, made[:]
    gc.collect()
    assert key not in semi_structured._CACHE  # forgotten with its tensor


def test_cuda_implementation_runs_the_compressed_weight(monkeypatch):
    seen = []

    def compress(w):
        seen.append(w)
        return w.clone()  # a stand-in for the compressed form: F.linear takes it the same way
    monkeypatch.setattr(semi_structured, "_compress", compress)
    g = torch.Generator().manual_seed(2)
    x, w, b = torch.randn(2, 3, 32, generator=g), torch.randn(16, 32, generator=g), torch.randn(16, generator=g)
    assert torch.equal(semi_structured.linear_2to4_cuda(x, w, b), F.linear(x, w, b))
    assert len(seen) == 1


def test_cuda_implementation_falls_back_to_dense_once(monkeypatch, caplog):
    monkeypatch.setattr(semi_structured, "_compress", lambda w: torch.zeros(3, 3))  # F.linear raises on it
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(4, 32, generator=g), torch.randn(16, 32, generator=g)
    with caplog.at_level(logging.WARNING, logger="fastc"):
        for _ in range(3):
            assert torch.equal(semi_structured.linear_2to4_cuda(x, w, None), F.linear(x, w))
    warnings = [r.message for r in caplog.records if "linear_2to4" in r.message]
    assert len(warnings) == 1 and "the sparse product of x (4, 32)" in warnings[0], warnings
    assert semi_structured.sparse_weight(w) is None  # dense from then on


def test_a_weight_that_is_not_two_four_is_never_compressed(monkeypatch, caplog):
    monkeypatch.setattr(semi_structured, "kernel_refusal", lambda w: None)
    w = torch.ones(16, 32)
    with caplog.at_level(logging.WARNING, logger="fastc"):
        assert semi_structured.sparse_weight(w) is None
    assert "a 16 x 32 weight that is not 2:4 sparse" in caplog.text


# -- refused on CPU, end to end ------------------------------------------------------------------
def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 16)).eval()


def _calibration(n=6, rows=16, seed=5):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(rows, 32, generator=g),) for _ in range(n)]


def _run(compiled, x):
    before = len(fastc.reports())
    with torch.no_grad():
        out = compiled(x)
    return out, fastc.reports()[before:]


def test_refused_on_cpu_through_torch_compile(fresh, caplog):
    model = _mlp()
    x = torch.randn(16, 32)
    compiled = torch.compile(model, backend="fastc", options={
        "target": "cpu", "lossy": "sparse-2to4", "calibration": _calibration(), "on_error": "raise"})
    with caplog.at_level(logging.WARNING, logger="fastc"):
        out, (report,) = _run(compiled, x)
    with torch.no_grad():
        assert torch.equal(out, model(x))
    (record,) = report.lossy
    assert record.rewritten == [] and record.left_out == []
    (note,) = record.not_proposed
    assert note.startswith("weights on cpu: 2:4 semi-structured sparsity needs a kernel for it, which exists "
                           "only on CUDA") and note.endswith("3 matched products left as they are")
    assert "not proposed: weights on cpu" in report.text()
    assert LINEAR_2TO4 not in report.ops_final
    warnings = [r.message for r in caplog.records if "sparse-2to4" in r.message]
    assert len(warnings) == 1 and "exists only on CUDA" in warnings[0], warnings


# -- the rewrite (refusal patched away) ----------------------------------------------------------
class MLP(nn.Module):
    """fc1 and head have a bias (addmm), fc2 has none (mm)."""

    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(32, 64), nn.Linear(64, 64, bias=False), nn.Linear(64, 16)

    def forward(self, x):
        return self.head(F.relu(self.fc2(F.relu(self.fc1(x)))))


def _input_norms(model, batches) -> dict[str, torch.Tensor]:
    """||X_j||_2 of each Linear's input columns over the batches (float64)."""
    sums, hooks = {}, []
    for name, m in model.named_modules():
        if isinstance(m, nn.Linear):
            def hook(mod, args, out, name=name):
                rows = args[0].reshape(-1, args[0].shape[-1]).double()
                sums[name] = sums.get(name, 0) + (rows * rows).sum(0)
            hooks.append(m.register_forward_hook(hook))
    with torch.no_grad():
        for b in batches:
            model(*b)
    for h in hooks:
        h.remove()
    return {k: v.sqrt() for k, v in sums.items()}


@pytest.mark.parametrize("score", ["wanda", "magnitude"])
def test_rewrite_equals_eager_with_masked_weights(score, kernel_everywhere):
    model = MLP().eval()
    g = torch.Generator().manual_seed(7)
    batches = [[torch.randn(3, 5, 32, generator=g)] for _ in range(3)]
    x = torch.randn(3, 5, 32, generator=g)
    gm = capture(model, (x,))
    proposals = make_pass("sparse-2to4", {"score": score}).propose(gm, PassContext(calibration_inputs=batches))
    assert len(proposals) == 3 and proposals.notes == []
    assert [p.sensitivity for p in proposals] == sorted(p.sensitivity for p in proposals)
    assert all(f"2:4 sparse, {score} scores" in p.what for p in proposals)
    for p in proposals:
        assert p.weight_bytes_before == p.weight_bytes_after > 0
        p.apply(gm)
    gm.graph.lint()
    gm.recompile()

    norms = _input_norms(model, batches)
    masked = copy.deepcopy(model)
    for name in ("fc1", "fc2", "head"):
        w = getattr(model, name).weight.detach()
        scores = w.double().abs() * (norms[name] if score == "wanda" else 1)
        getattr(masked, name).weight.data = torch.where(two_four_mask(scores), w, 0.0)
    with torch.no_grad():
        assert torch.equal(gm(x)[0], masked(x))
        assert not torch.equal(gm(x)[0], model(x))

    ops = [n for n in gm.graph.nodes if n.op == "call_function"]
    assert sum(str(n.target) == LINEAR_2TO4 for n in ops) == 3
    assert not any(str(n.target) in ("aten.mm.default", "aten.addmm.default", "aten.permute.default") for n in ops)
    weights = [getattr(gm, n.args[1].target) for n in ops if str(n.target) == LINEAR_2TO4]
    assert sorted(tuple(w.shape) for w in weights) == [(16, 64), (64, 32), (64, 64)]
    for w in weights:
        assert w.dtype == torch.float32 and w.is_contiguous()
        assert (_groups_of_four_nonzeros(w) == 2).all()
    assert sum(n.op == "get_attr" for n in gm.graph.nodes) == 5  # 3 masked weights, 2 biases


def _dense(values: torch.Tensor) -> str:
    return "dense<[" + ", ".join(repr(float(v)) for v in values.flatten()) + "]>"


def _linear_graph(w: torch.Tensor, b: torch.Tensor, rows: int = 4) -> str:
    out, inputs = w.shape
    return f"""
graph @linear(%x: f32[{rows}, {inputs}]) {{
  %w: f32[{out}, {inputs}] = const {_dense(w)}
  %b: f32[{out}] = const {_dense(b)}
  %y: f32[{rows}, {out}] = aten.linear.default(%x, %w, %b)
  return (%y,)
}}
"""


def test_rewrite_of_aten_linear_round_trips_the_text_form(kernel_everywhere):
    g = torch.Generator().manual_seed(8)
    w, b = torch.randn(16, 16, generator=g), torch.randn(16, generator=g)
    gm = parse_graph(_linear_graph(w, b))
    assert make_pass("sparse-2to4").run(gm, PassContext()) == 1
    gm.recompile()
    text = print_graph(gm, inline_limit=100000)
    assert "%y_2to4: f32[4, 16] = fastc.linear_2to4.default(%x, %w_2to4, %b)" in text
    again = parse_graph(text)
    x = torch.randn(4, 16, generator=g)
    want = F.linear(x, torch.where(two_four_mask(w.abs()), w, 0.0), b)
    assert torch.equal(gm(x)[0], want) and torch.equal(again(x)[0], want)


def test_wanda_follows_the_input_norms(kernel_everywhere):
    # Every row of W is [1, 2, 3, 4] repeated; inputs 0 and 1 of each 4 are 10x larger than 2 and 3:
    # wanda scores [10, 20, 3, 4] keep columns 0, 1; magnitude keeps 2, 3.
    w = torch.tensor([1.0, 2.0, 3.0, 4.0]).repeat(16, 4)
    scale = torch.tensor([10.0, 10.0, 1.0, 1.0]).repeat(4)
    g = torch.Generator().manual_seed(9)
    batches = [[torch.randn(32, 16, generator=g) * scale] for _ in range(2)]
    kept = {}
    for score in ("wanda", "magnitude"):
        gm = parse_graph(_linear_graph(w, torch.zeros(16), rows=32))
        make_pass("sparse-2to4", {"score": score}).run(gm, PassContext(calibration_inputs=batches))
        (node,) = [n for n in gm.graph.nodes if str(n.target) == LINEAR_2TO4]
        kept[score] = getattr(gm, node.args[1].target)[0, :4].tolist()
    assert kept == {"wanda": [1.0, 2.0, 0.0, 0.0], "magnitude": [0.0, 0.0, 3.0, 4.0]}


def test_sensitivity_is_the_relative_output_error(kernel_everywhere):
    g = torch.Generator().manual_seed(10)
    w, b = torch.randn(16, 16, generator=g), torch.zeros(16)
    batches = [[torch.randn(32, 16, generator=g)] for _ in range(2)]
    (p,) = make_pass("sparse-2to4", {"score": "magnitude"}).propose(
        parse_graph(_linear_graph(w, b, rows=32)), PassContext(calibration_inputs=batches))
    x = torch.cat([t for (t,) in batches]).double()
    w64 = w.double()
    dw = w64 - torch.where(two_four_mask(w.abs()), w64, 0.0)
    want = float((x @ dw.T).square().sum() / (x @ w64.T).square().sum())
    assert p.sensitivity == pytest.approx(want, rel=1e-9)
    # Without inputs: the weight's relative Frobenius error, and the proposal says so.
    (p,) = make_pass("sparse-2to4").propose(parse_graph(_linear_graph(w, b, rows=32)), PassContext())
    assert p.sensitivity == pytest.approx(float(dw.square().sum() / w64.square().sum()), rel=1e-9)
    assert p.what == "y: 2:4 sparse, magnitude scores (no calibration or example inputs)"


def test_small_and_odd_layers_are_left(kernel_everywhere):
    g = torch.Generator().manual_seed(11)
    odd = parse_graph(_linear_graph(torch.randn(16, 18, generator=g), torch.zeros(16)))
    proposals = make_pass("sparse-2to4").propose(odd, PassContext())
    assert list(proposals) == [] and proposals.notes == ["y: 18 inputs, not a multiple of 4"]
    small = parse_graph(_linear_graph(torch.randn(8, 16, generator=g), torch.zeros(8)))
    assert make_pass("sparse-2to4").propose(small, PassContext()) == []
    assert len(make_pass("sparse-2to4", {"min_features": "8"}).propose(small, PassContext())) == 1


def test_budget_keeps_the_cheap_layers_under_a_user_metric(fresh, kernel_everywhere):
    # Layers 0 and 2 are 2:4 sparse but for tiny entries (cheap to mask); layer 4 is dense (dear).
    model = _mlp()
    g = torch.Generator().manual_seed(12)
    structure = {}
    with torch.no_grad():
        for i in (0, 2):
            w = model[i].weight
            structure[i] = two_four_mask(torch.rand(w.shape, generator=g))
            big = w.sign() * (w.abs() + 0.05)  # kept by any score: 500x the tiny ones at least
            w.copy_(torch.where(structure[i], big, 1e-4 * torch.rand(w.shape, generator=g)))
    calibration = _calibration()
    held_out = calibration[3:]

    def closeness(run):  # minus the relative error against the model on the held-out inputs
        with torch.no_grad():
            got = torch.cat([run(*t) for t in held_out])
            want = torch.cat([model(*t) for t in held_out])
        return -float((got - want).norm() / want.norm())

    budget = 0.02
    compiled = torch.compile(model, backend="fastc", options={
        "target": "cpu", "lossy": "sparse-2to4", "calibration": calibration, "on_error": "raise",
        "accuracy_budget": budget, "accuracy_metric": closeness})
    out, (report,) = _run(compiled, held_out[0][0])
    (record,) = report.lossy
    assert sorted(w.split(" ")[0] for w in record.rewritten) == ["0", "2"], record.text()
    assert [w.split(" ")[0] for w in record.left_out] == ["4"], record.text()
    assert 0 < record.loss <= budget
    assert record.loss == pytest.approx(-closeness(compiled), rel=1e-3, abs=1e-6)
    assert record.weight_bytes_after == record.weight_bytes_before
    assert report.ops_final.get(LINEAR_2TO4) == 2
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for i in (0, 2):
            masked[i].weight.copy_(torch.where(structure[i], model[i].weight, 0.0))
        torch.testing.assert_close(out, masked(held_out[0][0]), rtol=1e-5, atol=1e-5)


# -- options ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("options, message", [
    ({"score": "random"}, "option score='random' is not valid (expected one of wanda, magnitude)"),
    ({"min_features": "0"}, "option min_features=0 is not valid (expected an integer >= 1)"),
    ({"min_features": "x"}, "option min_features='x' is not valid (expected an integer)"),
])
def test_option_errors(options, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_pass("sparse-2to4", options)


# -- CUDA ------------------------------------------------------------------------------------------
def _sparse_cuda() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability() >= (8, 0)


@pytest.mark.skipif(not _sparse_cuda(), reason="needs CUDA with compute capability 8.0+")
def test_cuda_kernel_equals_the_dense_masked_product(caplog):
    g = torch.Generator().manual_seed(13)
    w = torch.randn(128, 256, generator=g)
    w = torch.where(two_four_mask(w.abs()), w, 0.0).half().cuda()
    b = torch.randn(128, generator=g).half().cuda()
    x = torch.randn(4, 8, 256, generator=g).half().cuda()
    assert kernel_refusal(w) is None
    with caplog.at_level(logging.WARNING, logger="fastc"), torch.no_grad():
        y = torch.ops.fastc.linear_2to4(x, w, b)
        y_nobias = torch.ops.fastc.linear_2to4(x, w, None)
    assert not [r for r in caplog.records if "linear_2to4" in r.message], caplog.text  # no dense fallback
    assert isinstance(semi_structured.sparse_weight(w), torch.sparse.SparseSemiStructuredTensor)
    assert y.shape == (4, 8, 128) and y.dtype == torch.float16
    torch.testing.assert_close(y, F.linear(x, w, b), rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y_nobias, F.linear(x, w), rtol=1e-2, atol=1e-2)
