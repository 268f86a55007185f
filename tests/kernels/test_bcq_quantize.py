"""The BCQ quantizer: refinement, comparison with round-to-nearest, power-of-two scales."""
import pytest
import torch

from fastc.kernels.bcq import bcq_quantize, rtn_dequantized, to_power_of_two_terms
from fastc.kernels.bcq.power_of_two import power_of_two_terms


def _gaussian(out_features=64, in_features=256, seed=0):
    return torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed))


def _student_t(out_features=64, in_features=256, seed=0, dof=3.0):
    torch.manual_seed(seed)
    return torch.distributions.StudentT(dof).sample((out_features, in_features))


def _error(w, w_hat):
    return float((w - w_hat).pow(2).sum() / w.pow(2).sum())


@pytest.mark.parametrize("bits", [2, 3, 4])
@pytest.mark.parametrize("pow2_terms", [None, 2])
def test_refinement_never_increases_error(bits, pow2_terms):
    w = _student_t(seed=bits)
    errors = [_error(w, bcq_quantize(w, bits, 64, rounds=r, pow2_terms=pow2_terms).dequantize())
              for r in range(6)]
    assert all(b <= a + 1e-7 for a, b in zip(errors, errors[1:])), errors
    if pow2_terms is None and bits > 1:
        assert errors[-1] < errors[0]


@pytest.mark.parametrize("weights", [_gaussian, _student_t], ids=["gaussian", "student_t"])
@pytest.mark.parametrize("bits", [2, 3])
@pytest.mark.parametrize("group_size", [64, 128])
def test_bcq_beats_round_to_nearest(weights, bits, group_size):
    w = weights()
    bcq = _error(w, bcq_quantize(w, bits, group_size).dequantize())
    asymmetric = _error(w, rtn_dequantized(w, bits, group_size))
    symmetric = _error(w, rtn_dequantized(w, bits, group_size, symmetric=True))
    assert bcq < asymmetric and bcq < symmetric, (bcq, asymmetric, symmetric)


def test_one_bit_is_sign_times_mean_magnitude():
    w = _gaussian(8, 64)
    q = bcq_quantize(w, 1, 32)
    groups = w.reshape(8, 2, 32)
    expected = torch.sign(groups) * groups.abs().mean(-1, keepdim=True)
    torch.testing.assert_close(q.dequantize(), expected.reshape(8, 64))


def test_deterministic():
    w = _student_t()
    a = bcq_quantize(w, 3, 64, pow2_terms=2)
    b = bcq_quantize(w.clone(), 3, 64, pow2_terms=2)
    assert torch.equal(a.codes, b.codes) and torch.equal(a.scales, b.scales)


@pytest.mark.parametrize("terms", [1, 2, 3])
def test_power_of_two_scales_are_few_shifts(terms):
    w = _gaussian()
    q = bcq_quantize(w, 3, 64, pow2_terms=terms)
    assert q.codes.dtype == torch.int8 and set(q.codes.unique().tolist()) <= {-1, 1}
    rebuilt = torch.zeros_like(q.scales)
    for sign, exponent in power_of_two_terms(q.scales, terms):
        rebuilt += sign * torch.exp2(exponent.float())
    assert torch.equal(rebuilt, q.scales)
    assert torch.equal(q.scales.half().float(), q.scales)  # fp16 storage is exact


def test_power_of_two_rounding():
    scales = torch.tensor([0.3, -0.75, 1.0, 0.0, 5.0])
    assert to_power_of_two_terms(scales, 1).tolist() == [0.25, -0.5, 1.0, 0.0, 4.0]
    assert to_power_of_two_terms(scales, 2).tolist() == [0.3125, -0.75, 1.0, 0.0, 5.0]


def test_more_power_of_two_terms_approach_free_scales():
    w = _gaussian()
    free = _error(w, bcq_quantize(w, 3, 64).dequantize())
    errors = [_error(w, bcq_quantize(w, 3, 64, pow2_terms=k).dequantize()) for k in (1, 2, 3)]
    assert errors[0] > errors[2] and errors[2] < free * 1.05, (errors, free)
