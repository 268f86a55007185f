"""Short runs of the training script must lower the loss, reproducibly, and save loadable weights."""
import dataclasses

import torch

from fastc_eval import weights_io, zoo
from fastc_eval.train import main as train_main, train_reference

TINY_LM = {"dim": 32, "n_layers": 2, "n_heads": 2, "ffn_dim": 64, "context": 32}


def fixed_batch_loss(name, model, seed=123, batch=64):
    spec = zoo.reference(name)
    inputs, targets = spec.batches(model, batch)(torch.Generator().manual_seed(seed))
    model.eval()
    with torch.no_grad():
        return float(spec.loss(model(inputs), targets))


def short_run(name, steps, config=None, folder=None, **overrides):
    spec = zoo.reference(name)
    settings = dataclasses.replace(spec.settings, steps=steps, warmup=5, log_every=0, **overrides)
    torch.manual_seed(settings.seed)
    initial = fixed_batch_loss(name, spec.build(config))
    model, record = train_reference(name, settings=settings, config=config, folder=folder, log=lambda s: None)
    return initial, fixed_batch_loss(name, model), model, record


def test_char_lm_short_run_lowers_loss(tmp_path):
    before, after, model, record = short_run("char-lm", 60, TINY_LM, folder=tmp_path, batch=16)
    assert after < before - 0.5, (before, after)
    assert record["metrics"]["bpc"] < 4.5
    # what was saved loads back into the same numbers
    reloaded = zoo.reference("char-lm").build(record["config"])
    reloaded.load_state_dict(weights_io.load_state("char-lm", tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), reloaded.state_dict().values()))


def test_digits_cnn_short_run_lowers_loss():
    before, after, _, record = short_run("digits-cnn", 40, {"width": 8})
    assert after < 0.7 * before, (before, after)
    assert record["metrics"]["accuracy"] > 0.3


def test_digits_vit_short_run_lowers_loss_and_is_reproducible():
    config = {"dim": 32, "n_layers": 2, "mlp_dim": 64}
    before, after, one, _ = short_run("digits-vit", 60, config)
    _, _, two, _ = short_run("digits-vit", 60, config)
    assert after < before - 0.4, (before, after)  # 60 steps take it from ~2.5 to ~1.8
    assert all(torch.equal(a, b) for a, b in zip(one.state_dict().values(), two.state_dict().values()))


def test_module_entry_point(tmp_path):
    assert train_main(["digits-vit", "--steps", "2", "--out", str(tmp_path)]) == 0
    assert weights_io.load_record("digits-vit", tmp_path)["settings"]["steps"] == 2
