"""The cost model shipped for the CPU target (costmodel/models/cpu.json): it loads and checks
(nothing unpickled), its dataset card is beside it, and where it fits this machine the default
policy (tuning="auto") runs zoo models with the model's choices and matches eager."""
from __future__ import annotations

import json

import pytest
import torch

from fastc.costmodel import ModelChoices
from fastc.costmodel.default import compile_choices, default_model_path, load_model
from fastc.costmodel.learned import CostModel
from fastc.costmodel.machine import machine_id
from fastc.costmodel.mlir_features import FEATURE_VERSION, FEATURES

PATH = default_model_path("cpu")


def test_the_shipped_model_loads_and_names_what_it_was_trained_for():
    model = CostModel.load(str(PATH))
    header = model.header
    assert header["target"] == "cpu" and header["feature_version"] == FEATURE_VERSION
    assert header["machine_id"] and header["trained_on"]["models"]
    from fastc.costmodel.learned import RELATIVE_PREFIX
    assert {f.removeprefix(RELATIVE_PREFIX) for f in model.features} <= set(FEATURES)
    card = json.loads(PATH.with_name("cpu.card.json").read_text())
    assert card["machine_id"] == header["machine_id"]
    assert set(card["models"]) == set(header["trained_on"]["models"])


def _fits() -> str | None:
    model, why = load_model(str(PATH), "cpu")
    return None if model is not None else why


@pytest.mark.parametrize("name", ["mlp", "attention_block", "cnn", "gpt", "vit"])
def test_the_default_policy_runs_zoo_models_with_the_models_choices(name, monkeypatch):
    why = _fits()
    if why is not None:
        pytest.skip(f"the shipped model does not fit this machine ({machine_id()}): {why}")
    monkeypatch.delenv("FASTC_TUNING", raising=False)
    assert isinstance(compile_choices(target="cpu"), ModelChoices)
    from fastc_eval import zoo
    torch._dynamo.reset()
    model, inputs = zoo.build(name)
    model.eval()
    compiled = torch.compile(model, backend="fastc", options={"target": "cpu"})
    with torch.no_grad():
        expected = zoo.main_output(model(**inputs))
        for _ in range(2):
            torch.testing.assert_close(zoo.main_output(compiled(**inputs)), expected, rtol=1e-4, atol=1e-4)
