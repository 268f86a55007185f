"""Activation-aware BCQ lowers the layer-output error ||X W^T - X W_q^T|| against plain BCQ."""
import pytest
import torch

from fastc.kernels.bcq import bcq_quantize


def _correlated_inputs(samples=1024, features=128, rank=16, seed=0):
    generator = torch.Generator().manual_seed(seed)
    mix = torch.randn(rank, features, generator=generator)
    x = torch.randn(samples, rank, generator=generator) @ mix
    x += 0.1 * torch.randn(samples, features, generator=generator)
    x[:, :4] *= 10.0  # a few outlier channels, as in LLM activations
    return x


def _output_error(x, w, w_hat):
    return float((x @ (w - w_hat).T).norm() / (x @ w.T).norm())


@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("pow2_terms", [None, 2])
def test_activation_aware_lowers_output_error(bits, pow2_terms):
    x = _correlated_inputs()
    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(1))
    hessian = x.T @ x
    plain = bcq_quantize(w, bits, 32, pow2_terms=pow2_terms).dequantize()
    aware = bcq_quantize(w, bits, 32, pow2_terms=pow2_terms, hessian=hessian).dequantize()
    assert _output_error(x, w, aware) < 0.8 * _output_error(x, w, plain)


def test_activation_aware_codes_and_dead_inputs():
    x = _correlated_inputs(features=64)
    x[:, 10] = 0.0  # an input that is never active
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(2))
    q = bcq_quantize(w, 2, 32, hessian=x.T @ x)
    assert q.codes.shape == (2, 16, 64) and set(q.codes.unique().tolist()) <= {-1, 1}
    assert torch.isfinite(q.scales).all()
    again = bcq_quantize(w, 2, 32, hessian=x.T @ x)
    assert torch.equal(q.codes, again.codes) and torch.equal(q.scales, again.scales)


def test_activation_aware_power_of_two_scales_stay_power_of_two():
    from fastc.kernels.bcq import to_power_of_two_terms
    x = _correlated_inputs(features=64)
    w = torch.randn(16, 64, generator=torch.Generator().manual_seed(3))
    q = bcq_quantize(w, 3, 32, hessian=x.T @ x, pow2_terms=2)
    assert torch.equal(to_power_of_two_terms(q.scales, 2), q.scales)
