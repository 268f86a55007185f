"""layer-skip: residual blocks found on the graphs torch.compile hands the passes (char LM,
ResNet-style, ViT-style), removing one equals eager with that block replaced by identity, the
budget honoured through torch.compile with a user metric, fewer kernels on the cpu target,
refusals (no residual blocks, shape-changing blocks) and option errors."""
from __future__ import annotations

import copy
import logging

import pytest
import torch
import torch._dynamo
import torch.fx as fx
import torch.nn as nn
import torch.nn.functional as F

import fastc
import fastc.passes.layer_skip as layer_skip
from fastc.passes import PassContext, make_pass
from fastc.passes.layer_skip import LayerSkip
from fastc.passes.residual_blocks import find_blocks, remove_block
from fastc_eval.models.char_lm import CharLM, CharLMConfig
from fastc_eval.models.digits_vit import DigitsViT, DigitsViTConfig


@pytest.fixture(autouse=True)
def fresh():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# -- models ------------------------------------------------------------------------------------
class BasicBlock(nn.Module):
    """ResNet's basic block; a projection shortcut when the shape changes."""

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                         if stride != 1 or c_in != c_out else nn.Identity())

    def forward(self, x):
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + self.shortcut(x))


class SmallResNet(nn.Module):
    """Stem, layer1 (2 identity blocks), layer2 (a downsampling block, then an identity block)."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, 1, 1)
        self.layer1 = nn.Sequential(BasicBlock(8, 8), BasicBlock(8, 8))
        self.layer2 = nn.Sequential(BasicBlock(8, 16, stride=2), BasicBlock(16, 16))
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(F.relu(self.stem(x))))
        return self.head(x.mean((2, 3)))


class PlainMLP(nn.Module):
    """Indexed layers, none residual."""

    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList(nn.Sequential(nn.Linear(16, 16), nn.ReLU()) for _ in range(3))

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


class _SkipBlock(nn.Module):
    """Identity standing in for a block that takes extra arguments (the LM's rotary tables)."""

    def forward(self, x, *rest):
        return x


def _char_lm(n_layers=4):
    torch.manual_seed(0)
    return CharLM(CharLMConfig(n_layers=n_layers, dim=32, n_heads=2, ffn_dim=64, context=32)).eval()


def _vit(n_layers=3):
    torch.manual_seed(0)
    return DigitsViT(DigitsViTConfig(n_layers=n_layers)).eval()


def _resnet():
    torch.manual_seed(0)
    model = SmallResNet()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval()


def _tokens(seed=0, batch=2, seq=16):
    return (torch.randint(0, 98, (batch, seq), generator=torch.Generator().manual_seed(seed)),)


def _images(seed=0, batch=2, size=16, channels=3):
    return (torch.randn(batch, channels, size, size, generator=torch.Generator().manual_seed(seed)),)


MODELS = {  # name: (model, inputs(seed), blocks it has, how to replace block i by identity)
    "char-lm": (_char_lm, _tokens, [f"blocks.{i}" for i in range(4)],
                lambda m, i: m.blocks.__setitem__(i, _SkipBlock())),
    "vit": (_vit, lambda seed=0: _images(seed, channels=1), [f"blocks.{i}" for i in range(3)],
            lambda m, i: m.blocks.__setitem__(i, nn.Identity())),
    "resnet": (_resnet, _images, ["layer1.0", "layer1.1", "layer2.1"],
               lambda m, i: _resnet_block(m, i).__setitem__(int(_resnet_scope(i)[-1]), nn.Identity())),
}


def _resnet_scope(i):
    return ["layer1.0", "layer1.1", "layer2.1"][i]


def _resnet_block(m, i):
    return getattr(m, _resnet_scope(i).split(".")[0])


# -- the graph the passes see ------------------------------------------------------------------
def graph_passes_see(model, inputs, monkeypatch) -> fx.GraphModule:
    """The frozen graph torch.compile hands the lossy passes (scopes included): a copy taken when
    layer-skip looks for blocks (max_fraction=0: it proposes nothing)."""
    seen = []

    def spy(gm):
        seen.append(fx.GraphModule(gm, copy.deepcopy(gm.graph)))
        return find_blocks(gm)
    monkeypatch.setattr(layer_skip, "find_blocks", spy)
    compiled = torch.compile(model, backend="fastc", options={
        "target": "aten", "on_error": "raise", "lossy": "layer-skip{max_fraction=0}",
        "calibration": [inputs, inputs], "accuracy_budget": None})
    with torch.no_grad():
        compiled(*inputs)
    monkeypatch.undo()
    (gm,) = seen
    return gm


@pytest.mark.parametrize("name", MODELS)
def test_blocks_found(name, monkeypatch):
    build, inputs, scopes, _ = MODELS[name]
    blocks, notes = find_blocks(graph_passes_see(build(), inputs(), monkeypatch))
    assert [b.scope for b in blocks] == scopes
    if name != "resnet":  # pre-norm layers: attention and MLP, one block
        assert all(len(b.residual_adds) == 2 for b in blocks)
    else:  # the downsampling block has a projection shortcut: its output is not its input's type
        assert all(len(b.residual_adds) == 1 for b in blocks)
        assert any(n.startswith("layer2.0:") and "has the type of no input" in n for n in notes), notes


@pytest.mark.parametrize("name", MODELS)
def test_removing_a_block_equals_eager_with_identity(name, monkeypatch):
    build, inputs, scopes, skip = MODELS[name]
    model = build()
    gm = graph_passes_see(model, inputs(), monkeypatch)
    blocks, _ = find_blocks(gm)
    x = inputs(seed=1)
    for i in range(len(blocks)):
        trial = fx.GraphModule(gm, copy.deepcopy(gm.graph))
        erased = remove_block(trial, blocks[i])
        trial.graph.lint()
        trial.recompile()
        assert erased > 0
        assert not any(n.name in blocks[i].nodes for n in trial.graph.nodes if n.op == "call_function")
        reference = copy.deepcopy(model)
        skip(reference, i)
        with torch.no_grad():
            torch.testing.assert_close(trial(*x)[0], reference(*x))


def test_removing_a_block_drops_its_constants(monkeypatch):
    gm = graph_passes_see(_char_lm(), _tokens(), monkeypatch)
    blocks, _ = find_blocks(gm)
    before = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    remove_block(gm, blocks[0])
    after = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    assert len(before - after) == 9  # 2 norms, 4 attention and 3 MLP weights


# -- scores and proposals ----------------------------------------------------------------------
def _quiet_blocks(model, quiet=(1, 3), scale=1e-3):
    """Scales the residual branches of the `quiet` LM blocks: they barely change the stream."""
    with torch.no_grad():
        for i in quiet:
            model.blocks[i].attn.wo.weight.mul_(scale)
            model.blocks[i].ffn.w_down.weight.mul_(scale)
    return model


@pytest.mark.parametrize("score", ["influence", "loss"])
def test_quiet_blocks_come_first(score, monkeypatch):
    model = _quiet_blocks(_char_lm())
    gm = graph_passes_see(model, _tokens(), monkeypatch)
    ctx = PassContext(calibration_inputs=[list(_tokens(s)) for s in range(2)])
    proposals = LayerSkip(max_fraction=1.0, score=score).propose(gm, ctx)
    assert sorted(p.what.split(" ")[0] for p in proposals[:2]) == ["blocks.1", "blocks.3"]
    assert all(p.sensitivity < 0.01 for p in proposals[:2]) and all(p.sensitivity > 0.01 for p in proposals[2:])
    assert all(p.weight_bytes_before > 0 and p.weight_bytes_after == 0 for p in proposals)


def test_loss_score_is_greedy_removal(monkeypatch):
    """score=loss picks blocks one at a time, each the cheapest given those already picked: the
    same picks as that greedy search run on the eager model with blocks replaced by identity."""
    model = _char_lm()
    batches = [list(_tokens(s)) for s in range(2)]
    gm = graph_passes_see(model, _tokens(), monkeypatch)
    proposals = LayerSkip(max_fraction=0.75, score="loss").propose(gm, PassContext(calibration_inputs=batches))
    with torch.no_grad():
        reference = [model(*b) for b in batches]

    def error(removed):
        skipped = copy.deepcopy(model)
        for i in removed:
            skipped.blocks[i] = _SkipBlock()
        with torch.no_grad():
            got = [skipped(*b) for b in batches]
        diff = sum(float((g.double() - r.double()).pow(2).sum()) for g, r in zip(got, reference))
        return (diff / sum(float(r.double().pow(2).sum()) for r in reference)) ** 0.5

    picked, losses = [], []
    for _ in range(3):
        loss, best = min((error(picked + [i]), i) for i in range(4) if i not in picked)
        picked.append(best)
        losses.append(loss)
    assert [p.what.split(" ")[0] for p in proposals] == [f"blocks.{i}" for i in picked]
    expected = [max(losses[:k + 1]) for k in range(3)]
    assert [p.sensitivity for p in proposals] == pytest.approx(expected, rel=1e-4, abs=1e-7)


@pytest.mark.parametrize("fraction,count", [(0.5, 2), (0.6, 2), (0.75, 3), (1.0, 4), (0.2, 0)])
def test_at_most_max_fraction_of_the_blocks(fraction, count, monkeypatch):
    gm = graph_passes_see(_char_lm(), _tokens(), monkeypatch)
    ctx = PassContext(calibration_inputs=[list(_tokens())])
    assert len(LayerSkip(max_fraction=fraction).propose(gm, ctx)) == count


# -- through torch.compile ---------------------------------------------------------------------
def _calibration(n=6):
    return [_tokens(seed=10 + i) for i in range(n)]


def _compile(model, **options):
    base = {"lossy": "layer-skip{max_fraction=1.0}", "calibration": _calibration(), "on_error": "raise",
            "target": "aten"}
    return torch.compile(model, backend="fastc", options={**base, **options})


def _run(compiled, x):
    before = len(fastc.reports())
    with torch.no_grad():
        out = compiled(x)
    return out, fastc.reports()[before:]


def test_budget_honoured_with_a_user_metric():
    model = _quiet_blocks(_char_lm())
    held_out = _calibration()[3:]
    with torch.no_grad():
        reference = [model(*t) for t in held_out]

    def closeness(m):  # higher is better: minus the relative error against eager on held-out inputs
        got = torch.cat([m(*t) for t in held_out])
        want = torch.cat(reference)
        return -float((got - want).norm() / want.norm())

    budget = 0.01
    compiled = _compile(model, accuracy_metric=closeness, accuracy_budget=budget)
    out, (report,) = _run(compiled, held_out[0][0])
    (record,) = report.lossy
    assert sorted(w.split(" ")[0] for w in record.rewritten) == ["blocks.1", "blocks.3"]
    assert len(record.left_out) == 2
    assert 0 < record.loss <= budget
    with torch.no_grad():
        assert record.loss == pytest.approx(-closeness(compiled), rel=1e-3)
    assert record.weight_bytes_after < record.weight_bytes_before
    skipped = copy.deepcopy(model)
    for i in (1, 3):
        skipped.blocks[i] = _SkipBlock()
    with torch.no_grad():
        torch.testing.assert_close(out, skipped(held_out[0][0]))


def test_budget_zero_keeps_every_block():
    model = _quiet_blocks(_char_lm())
    x = _tokens(seed=99)[0]
    out, (report,) = _run(_compile(model, accuracy_budget=0.0), x)
    assert report.lossy[0].rewritten == []
    with torch.no_grad():
        torch.testing.assert_close(out, model(x))


def test_cpu_target_runs_fewer_kernels_without_the_blocks():
    model = _char_lm()
    x = _tokens(seed=99)[0]
    kernels = {}
    for lossy in (None, "layer-skip{max_fraction=0.5}"):
        torch._dynamo.reset()
        options = {"target": "cpu", "on_error": "raise"}
        if lossy:
            options.update(lossy=lossy, calibration=_calibration(), accuracy_budget=None)
        out, (report,) = _run(torch.compile(model, backend="fastc", options=options), x)
        kernels[lossy] = len(report.kernels)
        assert report.fallback is None
        if lossy:
            record = report.lossy[0]
            assert len(record.rewritten) == 2
            skipped = copy.deepcopy(model)
            for w in record.rewritten:
                skipped.blocks[int(w.split(" ")[0].split(".")[1])] = _SkipBlock()
            with torch.no_grad():
                torch.testing.assert_close(out, skipped(x), rtol=1e-4, atol=1e-4)
    assert kernels["layer-skip{max_fraction=0.5}"] < kernels[None]


# -- refusals ----------------------------------------------------------------------------------
def test_no_residual_blocks_no_proposals(monkeypatch, caplog):
    model = PlainMLP().eval()
    x = (torch.randn(4, 16),)
    gm = graph_passes_see(model, x, monkeypatch)
    blocks, notes = find_blocks(gm)
    assert blocks == []
    assert [n.split(":")[0] for n in notes] == ["layers.0", "layers.1", "layers.2"]
    assert all("no residual add" in n for n in notes), notes
    torch._dynamo.reset()
    with caplog.at_level(logging.INFO, logger="fastc"):
        compiled = torch.compile(model, backend="fastc", options={
            "target": "aten", "on_error": "raise", "lossy": "layer-skip", "calibration": [x, x],
            "accuracy_budget": 0.5})
        out, (report,) = _run(compiled, *x)
    (record,) = report.lossy
    assert record.rewritten == [] and record.note == "nothing to rewrite: no residual blocks found"
    assert any("not a residual block: layers.0: no residual add" in n for n in record.not_proposed)
    assert "not proposed: not a residual block: layers.0" in report.text()
    assert "layer-skip: not a residual block: layers.0: no residual add" in caplog.text
    with torch.no_grad():
        torch.testing.assert_close(out, model(*x))


def test_without_inputs_nothing_is_proposed(monkeypatch):
    gm = graph_passes_see(_char_lm(), _tokens(), monkeypatch)
    assert LayerSkip().propose(gm, PassContext()) == []


def test_option_errors():
    with pytest.raises(ValueError, match=r"option max_fraction=2.0 is not valid \(expected a number in \[0, 1\]\)"):
        make_pass("layer-skip", {"max_fraction": "2"})
    with pytest.raises(ValueError, match="option score='bi' is not valid"):
        make_pass("layer-skip", {"score": "bi"})
    assert make_pass("layer-skip", {"score": "loss", "max_fraction": "0.25"}).spec() == \
        "layer-skip{max_fraction=0.25,score=loss}"
