"""Bad arguments raise a ValueError that names the argument, the value and what is valid."""
import pytest
import torch

from fastc.kernels.bcq import bcq_linear, bcq_quantize, pack, save_packed


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(bits=0), r"bits must be an int in 1\.\.8, got 0"),
    (dict(bits=2.0), r"bits must be an int in 1\.\.8, got 2\.0"),
    (dict(group_size=48), r"group_size=48 does not divide in_features=64"),
    (dict(group_size=0), r"group_size must be a positive int, got 0"),
    (dict(rounds=-1), r"rounds must be an int >= 0, got -1"),
    (dict(pow2_terms=0), r"pow2_terms must be None \(free scales\) or an int in 1\.\.8, got 0"),
    (dict(hessian=torch.eye(32)), r"hessian must have shape \(64, 64\).*got \(32, 32\)"),
    (dict(hessian=torch.eye(64), damp=0.0), r"damp must be a float > 0.*got 0\.0"),
])
def test_bad_quantizer_arguments(kwargs, pattern):
    args = dict(weight=torch.randn(8, 64), bits=2, group_size=32)
    args.update(kwargs)
    with pytest.raises(ValueError, match=pattern):
        bcq_quantize(**args)


def test_bad_weights():
    with pytest.raises(ValueError, match=r"weight must be 2-D .* got shape \(64,\)"):
        bcq_quantize(torch.randn(64), 2, 32)
    with pytest.raises(ValueError, match=r"weight must be 2-D .* got shape \(2, 4, 8\)"):
        bcq_quantize(torch.randn(2, 4, 8), 2, 8)
    w = torch.randn(8, 64)
    w[3, 5] = float("nan")
    with pytest.raises(ValueError, match="weight contains NaN"):
        bcq_quantize(w, 2, 32)
    with pytest.raises(ValueError, match="floating-point"):
        bcq_quantize(torch.ones(8, 64, dtype=torch.int32), 2, 32)


def test_bad_linear_calls(tmp_path):
    packed = pack(bcq_quantize(torch.randn(8, 64), 2, 32))
    with pytest.raises(ValueError, match="in_features=64"):
        bcq_linear(torch.randn(2, 32), packed)
    with pytest.raises(ValueError, match=r"bias must have shape \(8,\)"):
        bcq_linear(torch.randn(2, 64), packed, bias=torch.zeros(7))
    with pytest.raises(ValueError, match=r"unknown backend 'cuda' \(valid: auto, reference"):
        bcq_linear(torch.randn(2, 64), packed, backend="cuda")
    with pytest.raises(ValueError, match="unknown kernel 'lut'"):
        bcq_linear(torch.randn(2, 64), packed, backend="triton", kernel="lut")
    with pytest.raises(ValueError, match="scale_dtype"):
        pack(bcq_quantize(torch.randn(8, 64), 2, 32), scale_dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="must not contain '.'"):
        save_packed(tmp_path / "x.safetensors", {"a.b": packed})


def test_triton_needs_group_multiple_of_32():
    packed = pack(bcq_quantize(torch.randn(8, 64), 2, 16))
    pytest.importorskip("triton")
    with pytest.raises(ValueError, match="multiple of 32, got 16"):
        bcq_linear(torch.randn(1, 64), packed, backend="triton")
