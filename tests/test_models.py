"""Real models through fastc vs eager PyTorch: inference (frozen weights) and training (gradients).

Models come from tests/model_zoo.py: tiny Hugging Face configs with random weights, and
hand-written modules. The max abs error of each check goes into a table printed at the end of the
run (and written to /tmp/fastc_model_errors.txt). Each model is compiled once per session by the
`compiled_zoo` fixture (tests/conftest.py), shared with tests/test_text_roundtrip_models.py.
"""
from __future__ import annotations

import pytest
import torch

import model_zoo
from model_zoo import ERROR_TABLE

OPTIONS = {"on_error": "raise"}
RTOL = ATOL = 1e-4
# Eval-mode BatchNorm that fold-batchnorm must fold into the convolution before it.
HAS_BATCHNORM = {"conv_bn", "resnet", "mobilenet_v2"}


def _max_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return (actual.detach() - expected.detach()).abs().max().item()


@pytest.mark.parametrize("name", list(model_zoo.BUILDERS))
def test_inference_matches_eager(name, compiled_zoo):
    run = compiled_zoo(name, training=False)
    ERROR_TABLE.append((name, "inference output", _max_err(run.actual, run.expected)))
    torch.testing.assert_close(run.actual, run.expected, rtol=RTOL, atol=ATOL)
    torch.testing.assert_close(run.again, run.actual, rtol=0, atol=0)

    assert run.reports, "fastc compiled no graph"
    assert [r.fallback for r in run.reports if r.fallback] == []
    assert {r.kind for r in run.reports} == {"inference"}
    assert sum(r.frozen_inputs for r in run.reports) > 0, "no parameter was frozen into a constant"
    if name in HAS_BATCHNORM:
        folded = sum(p.rewrites for r in run.reports for p in r.passes if p.name == "fold-batchnorm")
        assert folded > 0, "fold-batchnorm folded nothing"
        left = [op for r in run.reports for op in r.ops_final if "batch_norm" in op]
        assert left == [], f"batch norm left after folding: {left}"


@pytest.mark.parametrize("name", model_zoo.TRAINING)
def test_training_matches_eager(name, compiled_zoo):
    run = compiled_zoo(name, training=True)
    ERROR_TABLE.append((name, "training output", _max_err(run.actual, run.expected)))
    torch.testing.assert_close(run.actual, run.expected, rtol=RTOL, atol=ATOL)
    ref_params = dict(run.reference.named_parameters())
    grads = [(pname, p.grad, ref_params[pname].grad) for pname, p in run.model.named_parameters()]
    for pname, grad, ref in grads:
        assert (grad is None) == (ref is None), f"{pname}: gradient presence differs from eager"
    grads = [g for g in grads if g[1] is not None]
    ERROR_TABLE.append((name, "training grads", max(_max_err(g, r) for _, g, r in grads)))
    for pname, grad, ref in grads:
        torch.testing.assert_close(grad, ref, rtol=RTOL, atol=ATOL, msg=lambda m: f"grad of {pname}: {m}")
    ref_buffers = dict(run.reference.named_buffers())
    for bname, b in run.model.named_buffers():  # BatchNorm running statistics, updated in place
        torch.testing.assert_close(b, ref_buffers[bname], rtol=RTOL, atol=ATOL, msg=lambda m: f"buffer {bname}: {m}")

    assert [r.fallback for r in run.reports if r.fallback] == []
    kinds = {r.kind for r in run.reports}
    assert {"forward", "backward"} <= kinds, kinds
    assert sum(r.frozen_inputs for r in run.reports) == 0, "parameters that need gradients were frozen"
