"""shift-add on captured graphs: outputs stay close to the original graph's (closer with more
bits), one fastc.bcq_linear per matched layer, mixed bits within the average, activation-aware
quantization beating plain BCQ on skewed inputs, end-to-end (output) sensitivity against the
per-layer proxy, retry at more bits, option errors."""
import copy
import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from fastc.ir import node_scope, set_scope
from fastc.passes import PassContext, make_pass
from fastc.passes.shift_add import ShiftAdd
from fastc_eval.frozen_graph import capture

# Few refinement rounds: the tests check the pass, not the quantizer's best fit.
ROUNDS = 4


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.head = nn.Linear(32, 64), nn.Linear(64, 64), nn.Linear(64, 8)

    def forward(self, x):
        return self.head(F.gelu(self.fc2(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """A pre-norm transformer block: q/k/v/o and a 4x MLP are Linears; attention is bmm."""

    def __init__(self, d=32, heads=2):
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.up, self.down = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

    def forward(self, x):
        b, t, d = x.shape
        a = self.norm1(x)
        q, k, v = (f(a).view(b, t, self.heads, d // self.heads).transpose(1, 2) for f in (self.q, self.k, self.v))
        attention = torch.softmax(q @ k.transpose(-1, -2) / (d // self.heads) ** 0.5, -1)
        x = x + self.o((attention @ v).transpose(1, 2).reshape(b, t, d))
        return x + self.down(F.gelu(self.up(self.norm2(x))))


def _bcq_nodes(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function" and n.target is torch.ops.fastc.bcq_linear.default]


def _products(gm):
    return [n for n in gm.graph.nodes if n.op == "call_function"
            and n.target in (torch.ops.aten.mm.default, torch.ops.aten.addmm.default)]


def _relative_error(reference, actual):
    return float((actual - reference).norm() / reference.norm())


def _shifted(gm, p, ctx):
    rewrites = p.run(gm, ctx)
    gm.graph.lint()
    gm.recompile()
    return rewrites


@pytest.fixture(scope="module")
def mlp():
    torch.manual_seed(0)
    model = MLP().eval()
    calibration = [[torch.randn(128, 32)] for _ in range(4)]
    return model, calibration, torch.randn(64, 32)


def test_mlp_outputs_close_and_closer_with_more_bits(mlp):
    model, calibration, x = mlp
    with torch.no_grad():
        expected = model(x)
    errors = {}
    for bits in (2, 4):
        gm = capture(model, (x,))
        ctx = PassContext(calibration_inputs=calibration)
        rewrites = _shifted(gm, ShiftAdd(bits=bits, mixed=False, rounds=ROUNDS), ctx)
        assert rewrites == 3 and len(_bcq_nodes(gm)) == 3 and not _products(gm)
        errors[bits] = _relative_error(expected, gm(x)[0])
    assert errors[4] < 0.1, errors
    assert errors[2] < 0.6, errors
    assert errors[4] < errors[2] / 2, errors


def test_proposals_name_layers_bytes_and_keep_scope(mlp):
    model, calibration, x = mlp
    gm = capture(model, (x,))
    first = _products(gm)[0]
    set_scope(first, "fc1", "Linear")
    proposals = ShiftAdd(bits=3, mixed=False, rounds=ROUNDS).propose(gm, PassContext(calibration_inputs=calibration))
    assert len(proposals) == 3
    assert [p.sensitivity for p in proposals] == sorted(p.sensitivity for p in proposals)
    assert any(p.what == f"fc1 ({first.name}): 3 bits" for p in proposals), [p.what for p in proposals]
    for p in proposals:
        assert p.weight_bytes_after < p.weight_bytes_before / 4
    # The fc1 weight (64 x 32, fp32) against 3 planes of 64 x 1 words and 3 x 1 x 64 fp16 scales.
    fc1 = next(p for p in proposals if p.what.startswith("fc1"))
    assert (fc1.weight_bytes_before, fc1.weight_bytes_after) == (64 * 32 * 4, 3 * 64 * 4 + 3 * 64 * 2)
    # Proposals apply to a copy by node name; the graph they were proposed on is unchanged.
    trial = torch.fx.GraphModule(gm, copy.deepcopy(gm.graph))
    fc1.apply(trial)
    new = _bcq_nodes(trial)[0]
    assert node_scope(new) == ("fc1", "Linear")
    assert new.meta["val"].shape == first.meta["val"].shape
    assert len(_bcq_nodes(gm)) == 0


def test_transformer_block_every_linear_and_no_attention_product():
    torch.manual_seed(1)
    model = Block().eval()
    x = torch.randn(2, 8, 32)
    gm = capture(model, (x,))
    with torch.no_grad():
        expected = model(x) - x  # the block's own contribution (the residual passes through)
    ctx = PassContext(calibration_inputs=[[torch.randn(4, 16, 32)] for _ in range(4)])
    assert _shifted(gm, ShiftAdd(bits=4, rounds=ROUNDS), ctx) == 6
    assert len(_bcq_nodes(gm)) == 6
    assert not _products(gm)
    assert sum(n.target is torch.ops.aten.bmm.default for n in gm.graph.nodes) == 2
    assert _relative_error(expected, gm(x)[0] - x) < 0.15


@pytest.mark.parametrize("sensitivity", ["output", "layer"])
def test_mixed_bits_keep_the_average_and_lower_the_summed_error(sensitivity):
    torch.manual_seed(2)
    model = Block().eval()
    gm = capture(model, (torch.randn(2, 8, 32),))
    # Skewed channels: some layers see much more of the weight error than others.
    scale = torch.exp(torch.randn(32))
    ctx = PassContext(calibration_inputs=[[torch.randn(4, 16, 32) * scale] for _ in range(2)])
    for bits in (2.5, 3):
        p = ShiftAdd(bits=bits, rounds=ROUNDS, sensitivity=sensitivity)
        proposals = p.propose(gm, ctx)
        params = sum(q.layer.params for q in proposals)
        average = sum(q.layer.params * q.bits for q in proposals) / params
        assert average <= bits + 1e-9
        assert all(1 <= q.bits <= 4 for q in proposals)
        mixed = sum(p._cost(q.layer, q.bits) for q in proposals)
        uniform = sum(p._cost(q.layer, int(bits)) for q in proposals)
        assert mixed <= uniform
        if bits == 2.5:
            assert average > 2.2, [q.what for q in proposals]  # the spare half bit is spent
            assert mixed < uniform


def test_activation_aware_beats_plain_on_skewed_inputs():
    torch.manual_seed(3)
    model = MLP().eval()
    scale = torch.ones(32)
    scale[:4] = 20.0  # a few outlier channels, as in LLM activations

    def batch(n):
        return torch.randn(n, 32) * scale
    ctx = PassContext(calibration_inputs=[[batch(256)] for _ in range(4)])
    x = batch(256)
    with torch.no_grad():
        expected = model(x)
    errors = {}
    for aware in (True, False):
        gm = capture(model, (x,))
        _shifted(gm, ShiftAdd(bits=3, mixed=False, activation_aware=aware, rounds=ROUNDS), ctx)
        errors[aware] = _relative_error(expected, gm(x)[0])
    assert errors[True] < 0.8 * errors[False], errors


def test_without_enough_calibration_rows_it_is_plain_and_says_so(mlp):
    model, _, x = mlp
    gm = capture(model, (x,))
    proposals = ShiftAdd(bits=2, mixed=False, rounds=1).propose(gm, PassContext())
    assert all("plain BCQ: no calibration or example inputs" in p.what for p in proposals)
    proposals = ShiftAdd(bits=2, mixed=False, rounds=1).propose(gm, PassContext(example_inputs=[torch.randn(16, 32)]))
    assert all("plain BCQ: 16 calibration rows, fewer than its" in p.what for p in proposals)


def test_retry_offers_left_out_layers_at_one_more_bit(mlp):
    model, calibration, x = mlp
    gm = capture(model, (x,))
    ctx = PassContext(calibration_inputs=calibration)
    p = ShiftAdd(bits=3, mixed=False, rounds=ROUNDS)
    proposals = p.propose(gm, ctx)
    again = p.retry(gm, ctx, proposals[1:])
    assert sorted(q.layer.node for q in again) == sorted(q.layer.node for q in proposals[1:])
    assert all(q.bits == 4 and q.what.endswith("4 bits") for q in again)
    assert [q.sensitivity for q in again] == sorted(q.sensitivity for q in again)
    for q, r in zip(sorted(proposals[1:], key=lambda q: q.layer.node), sorted(again, key=lambda q: q.layer.node)):
        assert r.sensitivity < q.sensitivity and r.weight_bytes_after > q.weight_bytes_after
    assert p.retry(gm, ctx, again) == []  # at max_bits


class TwoBranches(nn.Module):
    """Two Linears with the same weight on the same input; the head reads branch b ten times
    louder, so b's weight error costs about 100x more at the output than a's."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(32, 32), nn.Linear(32, 32), nn.Linear(64, 16)
        with torch.no_grad():
            self.b.load_state_dict(self.a.state_dict())
            self.head.weight[:, 32:] *= 10

    def forward(self, x):
        return self.head(torch.cat([F.gelu(self.a(x)), F.gelu(self.b(x))], -1))


def _by_layer(proposals, gm):
    """{"a" | "b" | "head": proposal}, by the order of the products in the graph."""
    names = dict(zip((n.name for n in _products(gm)), ("a", "b", "head")))
    return {names[q.layer.node]: q for q in proposals}


def test_output_sensitivity_ranks_the_layer_that_matters_more():
    torch.manual_seed(4)
    model = TwoBranches().eval()
    gm = capture(model, (torch.randn(8, 32),))
    ctx = PassContext(calibration_inputs=[[torch.randn(128, 32)] for _ in range(2)])
    # The per-layer proxy sees two identical layers; the model output does not.
    layer = _by_layer(ShiftAdd(bits=2, mixed=False, rounds=ROUNDS, sensitivity="layer").propose(gm, ctx), gm)
    assert layer["a"].sensitivity == pytest.approx(layer["b"].sensitivity)
    output = _by_layer(ShiftAdd(bits=2, mixed=False, rounds=ROUNDS, sensitivity="output").propose(gm, ctx), gm)
    assert output["b"].sensitivity > 20 * output["a"].sensitivity
    # Mixed bits: the louder branch gets the bits (the proxy splits them by graph order).
    mixed = _by_layer(ShiftAdd(bits=2.5, rounds=ROUNDS, sensitivity="output").propose(gm, ctx), gm)
    assert mixed["b"].bits > mixed["a"].bits, {k: q.bits for k, q in mixed.items()}


def test_output_error_is_the_kl_of_quantizing_that_layer_alone(mlp):
    model, calibration, x = mlp
    gm = capture(model, (x,))
    ctx = PassContext(calibration_inputs=calibration)
    proposals = ShiftAdd(bits=2, mixed=False, rounds=ROUNDS).propose(gm, ctx)
    probe = proposals[0].layer.probe
    # The MLP's output is (rows, 8) scores: KL of the softmax, over all 512 rows (4 batches).
    assert probe.main == 0 and probe.rows == 512 and len(probe.batches) == 4
    for q in proposals:
        trial = torch.fx.GraphModule(gm, copy.deepcopy(gm.graph))
        q.apply(trial)
        trial.recompile()
        kl = sum(F.kl_div(F.log_softmax(trial(*b)[0], -1), F.log_softmax(gm(*b)[0], -1),
                          log_target=True, reduction="sum") for b in calibration) / 512
        assert q.layer.output_errors[2] == pytest.approx(float(kl), rel=1e-4, abs=1e-9)
        assert q.sensitivity == pytest.approx(q.layer.output_errors[2] / q.layer.share)


def test_output_probe_caps_rows_and_falls_back_to_relative_error(monkeypatch):
    import fastc.passes.shift_add as shift_add
    monkeypatch.setattr(shift_add, "PROBE_ROWS", 48)
    torch.manual_seed(5)
    model = nn.Sequential(nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 1)).eval()  # no class scores
    gm = capture(model, (torch.randn(8, 32),))
    calibration = [[torch.randn(40, 32)] for _ in range(3)]
    proposals = ShiftAdd(bits=2, mixed=False, rounds=ROUNDS, min_features=1).propose(
        gm, PassContext(calibration_inputs=calibration))
    probe = proposals[0].layer.probe
    # The first batch whole (40 rows), then 8 rows of the second (cut along its batch dimension).
    assert [b[0].shape[0] for b in probe.batches] == [40, 8] and probe.rows == 48
    assert probe.main is None
    for q in proposals:
        trial = torch.fx.GraphModule(gm, copy.deepcopy(gm.graph))
        q.apply(trial)
        trial.recompile()
        diff = sum(float(((trial(*b)[0] - gm(*b)[0]) ** 2).sum()) for b in probe.batches)
        norm = sum(float((gm(*b)[0] ** 2).sum()) for b in probe.batches)
        assert q.layer.output_errors[2] == pytest.approx(diff / norm, rel=1e-4)


def test_output_sensitivity_without_calibration_uses_the_layer_proxy(mlp):
    model, _, x = mlp
    gm = capture(model, (x,))
    p = ShiftAdd(bits=2, mixed=False, rounds=1)
    proposals = p.propose(gm, PassContext())
    assert all(q.layer.probe is None for q in proposals)
    assert [q.sensitivity for q in proposals] == [q.layer.cache[2][1] / q.layer.share for q in proposals]


@pytest.mark.parametrize("options, message", [
    ({"bits": "9"}, "option bits=9 is not valid (expected a number in [1, 8])"),
    ({"bits": "0.5"}, "option bits=0.5 is not valid"),
    ({"group_size": "4"}, "option group_size=4 is not valid (expected an integer >= 8)"),
    ({"max_bits": "0"}, "option max_bits=0 is not valid (expected an integer in [1, 8])"),
    ({"rounds": "-1"}, "option rounds=-1 is not valid"),
    ({"min_features": "0"}, "option min_features=0 is not valid"),
    ({"bits": "three"}, "option bits='three' is not valid (expected a number)"),
    ({"mixed": "maybe"}, "option mixed='maybe' is not valid (expected true or false)"),
    ({"sensitivity": "loss"}, "option sensitivity='loss' is not valid"),
])
def test_bad_options(options, message):
    with pytest.raises(ValueError, match=re.escape("pass 'shift-add': " + message)):
        make_pass("shift-add", options)


def test_spec_round_trips():
    p = ShiftAdd(bits=2.5, pow2=True)
    assert p.spec() == "shift-add{bits=2.5,pow2=true}"
    assert make_pass("shift-add", {"bits": "2.5", "pow2": "true"}) == p


def test_power_of_two_scales(mlp):
    model, calibration, x = mlp
    gm = capture(model, (x,))
    with torch.no_grad():
        expected = model(x)
    p = ShiftAdd(bits=3, mixed=False, pow2=True, rounds=ROUNDS)
    proposals = p.propose(gm, PassContext(calibration_inputs=calibration))
    for q in proposals:
        packed = q.layer.cache[3][0]
        assert packed.pow2_terms == 2
        # Each |scale| is 2^a + 2^b or 2^(a+1) - 2^b (2^a its leading power of two), or one power.
        s = packed.scales.double().abs().flatten()
        s = s[s > 0]
        lead = 2.0 ** torch.floor(torch.log2(s))
        assert bool((_power_of_two_or_zero(s - lead) | _power_of_two_or_zero(2 * lead - s)).all())
    for q in proposals:
        q.apply(gm)
    gm.recompile()
    assert _relative_error(expected, gm(x)[0]) < 0.3


def _power_of_two_or_zero(t):
    return (t == 0) | (torch.log2(t) == torch.round(torch.log2(t)))
