"""The harness reports no change for identity, a change for destructive rewrites, and spreads
over seeds for stochastic ones; calibration data comes from training inputs only."""
import json

import pytest
import torch
from torch import nn

from fastc.reference import catalog, digits_data, measure, transforms


def test_identity_reports_zero_change():
    report = measure("digits-cnn", transforms.get("identity"))
    assert report.metric == "accuracy" and report.higher_is_better is True
    for m in report.before:
        assert report.change(m) == 0.0
        assert report.after[m].std == 0.0
    assert report.weights_before == report.weights_after
    assert report.before["accuracy"] > 0.95


def test_zero_weights_destroys_accuracy():
    report = measure("digits-cnn", transforms.get("zero-weights"))
    assert report.after["accuracy"].mean < 0.3
    assert report.change() < -0.6
    assert report.weights_after["nonzero_parameters"] < report.weights_before["nonzero_parameters"] // 10


def test_prune_90_changes_metric_and_nonzero_count_not_bytes():
    report = measure("digits-vit", transforms.get("prune-90"))
    assert report.change() < -0.05
    assert report.change("nll") > 0.1
    wb, wa = report.weights_before, report.weights_after
    assert wa["parameters"] == wb["parameters"] and wa["bytes"] == wb["bytes"]
    assert wa["nonzero_parameters"] < 0.3 * wb["nonzero_parameters"]


def test_fp16_round_trip_is_exact_on_fp16_stored_weights():
    report = measure("digits-cnn", transforms.get("round-fp16"))
    assert report.change() == 0.0 and report.change("nll") == 0.0


def test_stochastic_transform_is_reported_over_seeds_reproducibly():
    a = measure("digits-vit", transforms.get("noise-40"), seeds=[0, 1, 2])
    b = measure("digits-vit", transforms.get("noise-40"), seeds=[0, 1, 2])
    assert a.after["nll"].values == b.after["nll"].values
    assert len(set(a.after["nll"].values)) == 3 and a.after["nll"].std > 0
    assert a.after["nll"].mean == pytest.approx(sum(a.after["nll"].values) / 3)


def test_calibrated_transform_gets_training_inputs():
    seen = []

    def spy(model, calibration):
        seen.append(calibration)
        return model

    report = measure("digits-cnn", spy, calibration=32)
    assert report.calibration_samples == 32
    assert torch.equal(seen[0], digits_data.load_split().x_train[:32])


def test_prune_then_recalibrate_batchnorm_uses_calibration():
    t = transforms.get("prune-50,recalibrate-bn")
    assert t.needs_calibration
    report = measure("digits-cnn", t, calibration=256)
    assert report.calibration_samples == 256
    assert report.change() < 0.01  # a change is reported; no claim on its sign


def test_module_with_eval_fn_and_report_forms():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    x = torch.randn(20, 4)
    target = model(x).detach()

    def eval_fn(m):
        with torch.no_grad():
            return {"mse": float(((m(x) - target) ** 2).mean())}

    report = measure(model, transforms.get("zero-weights"), eval_fn=eval_fn, higher_is_better=False)
    assert report.metric == "mse" and report.before["mse"] == 0.0 and report.after["mse"].mean > 0
    assert report.weights_before == {"parameters": 15, "nonzero_parameters": 15, "bytes": 60}
    assert report.weights_after["nonzero_parameters"] == 3  # the bias survives
    assert model[0].weight.abs().sum() > 0  # the original model is untouched
    text = report.text()
    assert "mse*" in text and "zero-weights" in text and "weight bytes" in text
    assert json.loads(report.json_text())["change"]["mse"] == report.change()


def test_clear_errors():
    with pytest.raises(ValueError, match="needs eval_fn"):
        measure(nn.Linear(2, 2), transforms.get("identity"))
    with pytest.raises(ValueError, match="unknown reference model 'nope'.*digits-cnn"):
        measure("nope", transforms.get("identity"))
    with pytest.raises(ValueError, match="unknown transform 'prune'.*identity"):
        transforms.get("prune")
    with pytest.raises(ValueError, match="pass calibration_data"):
        measure(nn.Linear(2, 2), transforms.get("identity"), eval_fn=lambda m: {"x": 0.0}, calibration=True)


def test_char_lm_prune_costs_bits():
    report = measure("char-lm", transforms.get("prune-60"))
    assert report.metric == "bpc" and report.higher_is_better is False
    assert report.change() > 0.05
