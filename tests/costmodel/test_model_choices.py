"""ModelChoices (the learned cost model's choices) and the `tuning` / `cost_model` options: a
model trained on a small collected set drives a compilation that matches eager; where it is unsure
only its top-k are measured; a model for another machine is refused with a message and the
heuristic runs; bad option values are clear errors."""
from __future__ import annotations

import json
import warnings

import pytest
import torch
import torch.nn as nn

from fastc.costmodel import ATEN, KernelFeatures, ModelChoices
from fastc.costmodel.collecting import CollectingChoices
from fastc.costmodel.default import compile_choices, load_model
from fastc.costmodel.learned import train
from fastc.costmodel.machine import fingerprint, machine_id
from fastc.costmodel.mlir_features import FEATURE_VERSION
from fastc.ir.schedule import Schedule


class Ranked:
    """A model double: ranks candidates by a feature the test sets, unsure when told."""

    def __init__(self, unsure=False):
        self.unsure = unsure

    def order(self, rows, top_k=3, margin=0.05):
        order = sorted(range(len(rows)), key=lambda i: rows[i]["rank"])
        return order, self.unsure


A, B, C = (Schedule(XBLOCK=0, tile_outer=n) for n in (1, 4, 16))


def _kernel(ranks: dict, illegal=()):
    def describe(candidate):
        if candidate in illegal:
            raise RuntimeError("does not tile")
        return {"rank": ranks[candidate]}
    return KernelFeatures("k0", "reduction", "cpu", sizes={"xnumel": 1024}, describe=describe)


def test_a_sure_model_runs_its_best_candidate_and_measures_nothing():
    ran = []
    k = _kernel({ATEN: 3, A: 2, B: 0, C: 1})
    choices = ModelChoices(Ranked())
    assert choices.choose(k, [ATEN, A, B, C]) is None   # decided at the first call
    records = []
    assert choices.choose(k, [ATEN, A, B, C], run=ran.append, records=records) == B
    assert ran == [B] and records == []
    assert choices.stats["kernels"] == 1 and choices.stats["measured"] == 0


def test_an_unsure_model_measures_only_its_top_k():
    k = _kernel({ATEN: 3, A: 2, B: 0, C: 1})
    choices = ModelChoices(Ranked(unsure=True), top_k=2)
    records = []
    picked = choices.choose(k, [ATEN, A, B, C], run=lambda c: None, records=records)
    assert picked in (B, C)
    assert {json.dumps(r["candidate"], sort_keys=True) for r in records} == {
        json.dumps(r, sort_keys=True) for r in (B.__dict__, C.__dict__)}
    assert choices.stats["unsure"] == 1 and choices.stats["measured"] == 2


def test_candidates_that_do_not_apply_or_do_not_build_are_skipped():
    k = _kernel({ATEN: 3, A: 2, B: 0, C: 1}, illegal=(B,))

    def run(candidate):
        if candidate == C:
            raise RuntimeError("LLVM said no")
    assert ModelChoices(Ranked()).choose(k, [ATEN, A, B, C], run=run) == A


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A model trained on every candidate of two small models' kernels, measured here."""
    torch.manual_seed(0)
    rows = []
    nets = [nn.Sequential(nn.Linear(32, 64), nn.LayerNorm(64), nn.GELU(), nn.Linear(64, 32)).eval(),
            nn.Sequential(nn.LayerNorm(48), nn.Softmax(-1)).eval()]
    for i, (net, x) in enumerate(zip(nets, [torch.randn(8, 32), torch.randn(16, 48)])):
        collected = []
        compiled = torch.compile(net, backend="fastc", options={
            "target": "cpu", "mode": "max-autotune", "choices": CollectingChoices(rows=collected, repeats=2)})
        with torch.no_grad():
            compiled(x)
        for r in collected:
            r.update(model=f"net{i}", group=f"net{i}/{r['kernel']}", machine_id=machine_id(),
                     machine=json.dumps(fingerprint()), versions="{}", feature_version=FEATURE_VERSION,
                     target="cpu")
        rows += collected
    torch._dynamo.reset()
    assert rows and any(r.get("ms") for r in rows)
    model = train(rows, params={"rounds": 20, "max_depth": 3})
    path = tmp_path_factory.mktemp("model") / "cpu.json"
    model.save(str(path))
    return path


def test_tuning_model_compiles_with_the_models_choices_and_matches_eager(model_file):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(24, 40), nn.LayerNorm(40), nn.SiLU()).eval()
    x = torch.randn(6, 24)
    compiled = torch.compile(net, backend="fastc", options={"target": "cpu", "tuning": "model",
                                                            "cost_model": str(model_file)})
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-5, atol=1e-5)


def test_a_model_for_another_machine_is_refused_and_the_heuristic_runs(model_file, tmp_path):
    data = json.loads(model_file.read_text())
    data["header"]["machine_id"] = "Some Other CPU / 64 cpus / avx2"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    model, why = load_model(str(other), "cpu")
    assert model is None and "Some Other CPU" in why and str(other) in why
    with pytest.warns(UserWarning, match="cost model is not used"):
        chosen = compile_choices(target="cpu", tuning="model", model_path=str(other))
    assert type(chosen).__name__ == "HeuristicChoices"
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # auto: quietly measures instead
        assert type(compile_choices(target="cpu", tuning="auto", model_path=str(other))).__name__ == "MeasuredChoices"
    net = nn.Linear(8, 8).eval()
    compiled = torch.compile(net, backend="fastc", options={"target": "cpu", "tuning": "model",
                                                            "cost_model": str(other)})
    x = torch.randn(2, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x))


def test_auto_uses_a_model_that_fits_this_machine(model_file):
    assert isinstance(compile_choices(target="cpu", tuning="auto", model_path=str(model_file)), ModelChoices)
    assert type(compile_choices(target="cpu", tuning="measure", model_path=str(model_file))).__name__ == "MeasuredChoices"
    assert type(compile_choices(target="cpu", tuning="heuristic")).__name__ == "HeuristicChoices"


@pytest.mark.parametrize("options,message", [
    ({"tuning": "fastest"}, "tuning='fastest' is not valid (valid: auto, model, measure, heuristic)"),
    ({"cost_model": "/no/such/model.json"}, "cost_model='/no/such/model.json' is not valid"),
])
def test_bad_tuning_options_are_clear_errors(options, message):
    from fastc.options import make_options
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_options({"target": "cpu", **options})


def test_relative_features_compare_a_kernels_candidates_with_its_cheapest():
    import numpy as np
    from fastc.costmodel.learned import with_relative
    x = np.array([[100.0, 1.0], [400.0, 2.0], [10.0, 5.0], [10.0, np.nan]], np.float32)
    qid = np.array([0, 0, 1, 1])
    out = with_relative(x, qid, [0])
    assert out.shape == (4, 3)
    np.testing.assert_allclose(out[:, 2], np.log2([1.0, 401 / 101, 1.0, 1.0]), rtol=1e-6)
    np.testing.assert_array_equal(out[:, :2], x)
