"""The reference path of bcq_linear against PyTorch's linear with the dequantized weight."""
import pytest
import torch

from fastc.kernels.bcq import bcq_linear, bcq_quantize, dequantize, pack


@pytest.mark.parametrize("bits,group_size,in_features", [(1, 32, 64), (2, 16, 48), (3, 64, 128),
                                                          (4, 128, 256)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_reference_matches_dense_linear(bits, group_size, in_features, dtype):
    generator = torch.Generator().manual_seed(bits)
    w = torch.randn(24, in_features, generator=generator)
    packed = pack(bcq_quantize(w, bits, group_size, rounds=2))
    x = torch.randn(2, 3, in_features, generator=generator).to(dtype)
    bias = torch.randn(24, generator=generator)
    y = bcq_linear(x, packed, bias)  # CPU tensors: the reference path
    expected = torch.nn.functional.linear(x.float(), dequantize(packed), bias).to(dtype)
    assert y.shape == (2, 3, 24) and y.dtype == dtype
    tolerance = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(y, expected, rtol=tolerance, atol=tolerance)


def test_quantized_linear_is_close_to_the_original_at_4_bits():
    w = torch.randn(32, 128, generator=torch.Generator().manual_seed(0))
    x = torch.randn(4, 128, generator=torch.Generator().manual_seed(1))
    y = bcq_linear(x, pack(bcq_quantize(w, 4, 32)))
    exact = torch.nn.functional.linear(x, w)
    assert float((y - exact).norm() / exact.norm()) < 0.15


def test_cpu_triton_without_interpreter_says_how_to_get_it():
    triton = pytest.importorskip("triton")
    if triton.knobs.runtime.interpret:
        pytest.skip("this process runs Triton's interpreter")
    packed = pack(bcq_quantize(torch.randn(8, 64), 2, 32))
    with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
        bcq_linear(torch.randn(1, 64), packed, backend="triton")
