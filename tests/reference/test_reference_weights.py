"""The committed weights load with safetensors and reach the stated quality on held-out data."""
import json

import pytest
import torch
from safetensors import safe_open

from fastc_eval import weights_io, zoo
from fastc_eval.zoo import load

# Minimum quality of the committed weights, set below what training reached (see the sidecars
# and docs/reference-models.md) with a margin.
MIN_ACCURACY = {"digits-cnn": 0.95, "digits-vit": 0.95}
MAX_BPC = {"char-lm": 2.5}


@pytest.mark.parametrize("name", list(zoo.REFERENCE))
def test_weights_are_safetensors_with_sidecar(name):
    path = weights_io.weights_path(name)
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["model"] == name
        dtypes = {f.get_tensor(k).dtype for k in f.keys()}
    assert dtypes <= {torch.float16, torch.int64}
    record = json.loads(weights_io.sidecar_path(name).read_text())
    for key in ("config", "settings", "metrics", "train_seconds", "machine", "parameters"):
        assert key in record
    assert path.stat().st_size < 4_000_000


@pytest.mark.parametrize("name", ["digits-cnn", "digits-vit"])
def test_digits_models_reach_stated_accuracy(name):
    model = load(name)
    metrics = zoo.reference(name).evaluate(model)
    assert metrics["accuracy"] >= MIN_ACCURACY[name]
    record = weights_io.load_record(name)
    assert metrics["accuracy"] == pytest.approx(record["metrics"]["accuracy"], abs=1e-9)
    assert metrics["nll"] == pytest.approx(record["metrics"]["nll"], rel=1e-4)


def test_char_lm_reaches_stated_bits_per_character():
    model = load("char-lm")
    assert model.cfg.n_layers >= 6
    metrics = zoo.reference("char-lm").evaluate(model)
    assert metrics["bpc"] <= MAX_BPC["char-lm"]
    record = weights_io.load_record("char-lm")
    assert metrics["bpc"] == pytest.approx(record["metrics"]["bpc"], rel=1e-3)


@pytest.mark.parametrize("name", list(zoo.REFERENCE))
def test_models_trace_as_one_graph(name):
    spec = zoo.reference(name)
    model = spec.build(weights_io.load_record(name)["config"]).eval()
    example = spec.calibration(model, 2)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(example), model(example))


def test_missing_weights_error_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m fastc_eval.train digits-cnn"):
        weights_io.load_state("digits-cnn", tmp_path)
