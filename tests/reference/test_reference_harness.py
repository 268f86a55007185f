"""The harness measures fastc pass pipelines: no change without passes, a change for destructive
ones, a seeded spread for stochastic ones; lossy passes get calibration inputs from the training
split only, and their output error as the pass manager measured it."""
import json

import pytest
import torch
from torch import nn

from fastc.passes import Pass
from fastc_eval import measure, zoo
from fastc_eval.data import digits


def test_no_passes_report_zero_change():
    report = measure("digits-cnn", "")
    assert report.metric == "accuracy" and report.higher_is_better is True
    for m in report.before:
        assert report.change(m) == 0.0
        assert report.after[m].std == 0.0
    assert report.weights_before == report.weights_after
    assert report.before["accuracy"] > 0.95
    assert report.passes == "" and report.pass_costs == []


def test_zero_weights_destroys_accuracy():
    report = measure("digits-cnn", "zero-weights")
    assert report.after["accuracy"].mean < 0.3
    assert report.change() < -0.6
    assert report.weights_after["nonzero_weights"] < report.weights_before["nonzero_weights"] // 10
    [cost] = report.pass_costs
    assert cost["pass"] == "zero-weights" and cost["rewrites"] == 14 and cost["error"] > 0.5


def test_prune_90_changes_metric_and_nonzero_count_not_bytes():
    report = measure("digits-vit", "prune-magnitude{fraction=0.9}")
    assert report.passes == "prune-magnitude{fraction=0.9}"
    assert report.change() < -0.05
    assert report.change("nll") > 0.1
    wb, wa = report.weights_before, report.weights_after
    assert wa["weights"] == wb["weights"] and wa["bytes"] == wb["bytes"]
    assert wa["nonzero_weights"] < 0.3 * wb["nonzero_weights"]


def test_fp16_rounding_is_exact_on_fp16_stored_weights():
    report = measure("digits-cnn", "round-weights{dtype=float16}")
    assert report.change() == 0.0 and report.change("nll") == 0.0
    assert report.pass_costs[0]["rewrites"] == 0  # nothing to round: every weight is an fp16 value


def test_stochastic_pass_is_reported_over_seeds_reproducibly():
    a = measure("digits-vit", "add-weight-noise{relative_std=0.4}", seeds=[0, 1, 2])
    b = measure("digits-vit", "add-weight-noise{relative_std=0.4}", seeds=[0, 1, 2])
    assert a.after["nll"].values == b.after["nll"].values
    assert len(set(a.after["nll"].values)) == 3 and a.after["nll"].std > 0
    assert a.after["nll"].mean == pytest.approx(sum(a.after["nll"].values) / 3)


class Spy(Pass):
    """A lossy pass that records the context it is handed."""
    name = "spy"
    exact = False
    seen = []

    def run(self, gm, ctx):
        self.seen.append(ctx)
        return 0


def test_passes_get_training_inputs_and_are_named():
    report = measure("digits-cnn", [Spy()], calibration=32)
    assert report.calibration_samples == 32
    [ctx] = Spy.seen
    assert "spy" in ctx.requested  # named by the user: a lossy pass runs
    assert torch.equal(ctx.calibration_inputs[0][0], digits.load_split().x_train[:32])


def test_prune_then_recalibrate_batchnorm_uses_calibration():
    report = measure("digits-cnn", "prune-magnitude{fraction=0.5},recalibrate-batchnorm", calibration=256)
    assert report.calibration_samples == 256
    prune, recalibrate = report.pass_costs
    assert recalibrate["pass"] == "recalibrate-batchnorm" and recalibrate["rewrites"] == 13
    assert recalibrate["error"] < prune["error"]  # closer to the unpruned outputs
    assert report.change() > -0.05


def test_accuracy_budget_undoes_a_lossy_pass():
    report = measure("digits-cnn", "zero-weights", accuracy_budget=0.01)
    [cost] = report.pass_costs
    assert cost["rewrites"] == 0 and cost["note"].startswith("left out")
    assert report.change() == 0.0


def test_module_with_eval_fn_and_report_forms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(20, 4)
    target = model(x).detach()

    def eval_fn(m):
        with torch.no_grad():
            return {"mse": float(((m(x) - target) ** 2).mean())}

    report = measure(model, "zero-weights", eval_fn=eval_fn, calibration_data=x[:8], higher_is_better=False)
    assert report.metric == "mse" and report.before["mse"] == 0.0 and report.after["mse"].mean > 0
    assert report.weights_before == {"weights": 15, "nonzero_weights": 15, "bytes": 60}
    assert report.weights_after["nonzero_weights"] == 3  # the bias survives
    assert model[0].weight.abs().sum() > 0  # the original model is untouched
    text = report.text()
    assert "mse*" in text and "zero-weights" in text and "weight bytes" in text and "output error" in text
    assert json.loads(report.json_text())["change"]["mse"] == report.change()


def test_clear_errors():
    with pytest.raises(ValueError, match="needs eval_fn"):
        measure(nn.Linear(2, 2), "")
    with pytest.raises(ValueError, match="needs calibration_data"):
        measure(nn.Linear(2, 2), "", eval_fn=lambda m: {"x": 0.0})
    with pytest.raises(ValueError, match="unknown reference model 'nope'.*digits-cnn"):
        measure("nope", "")
    with pytest.raises(ValueError, match="unknown pass 'prune'.*prune-magnitude"):
        measure("digits-cnn", "prune")
    with pytest.raises(ValueError, match=r"fraction=1.5 is not valid \(expected a number in \[0, 1\]\)"):
        measure("digits-cnn", "prune-magnitude{fraction=1.5}")


def test_char_lm_prune_costs_bits():
    report = measure("char-lm", "prune-magnitude{fraction=0.6}")
    assert report.metric == "bpc" and report.higher_is_better is False
    assert report.change() > 0.05


def test_lossy_passes_through_torch_compile():
    """The same passes run in fastc's own pipeline when named in options["lossy"] (before the
    exact passes, so fold-batchnorm folds the recalibrated statistics): the pass manager measures
    what they cost on the held-out calibration inputs."""
    import fastc

    model, inputs = zoo.build("digits-cnn", batch=16)
    torch._dynamo.reset()
    first = len(fastc.reports())
    calibration = [(zoo.reference("digits-cnn").calibration(model, 48)[i:i + 16],) for i in (0, 16, 32)]
    compiled = torch.compile(model, backend="fastc", options={
        "lossy": "prune-magnitude{fraction=0.5},recalibrate-batchnorm", "calibration": calibration,
        "accuracy_metric": "relative-error", "passes": "fold-batchnorm,dead-code",
        "target": "aten", "on_error": "raise"})
    with torch.no_grad():
        out, expected = compiled(**inputs), model(**inputs)
    [report] = fastc.reports()[first:]
    torch._dynamo.reset()
    costs = {p.name.split("{")[0]: p for p in report.passes}
    assert costs["prune-magnitude"].rewrites == 14 and costs["prune-magnitude"].error > 0
    assert costs["recalibrate-batchnorm"].rewrites == 13
    assert costs["fold-batchnorm"].rewrites == 13
    assert not torch.allclose(out, expected)  # pruned: not the same model any more
    assert (out.argmax(-1) == expected.argmax(-1)).float().mean() > 0.5
