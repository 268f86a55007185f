"""The native CPU BCQ kernel (cpu_native.py), the CPU paths of bcq_linear_cpu and the custom op
torch.ops.fastc.bcq_linear (eager, torch.compile, fake tensors, Triton's interpreter)."""
import importlib
import json
import logging
import os
import subprocess
import sys

import pytest
import torch

from fastc.kernels.bcq import PackedBCQ, bcq_linear_cpu, bcq_quantize, dequantize, pack, reference_linear
from fastc.kernels.bcq import cpu_native, torch_op
from fastc.kernels.custom_ops import registered

pytest.importorskip("torch_mlir.execution_engine")

# in_features -> group size: multiples of 32, and a divisor of 32 with in not a multiple of 32.
GROUPS = {32: 32, 96: 32, 128: 64, 256: 128, 48: 16}
# (out, rows, scale dtype, bias): every out, row count, dtype and bias setting appears.
CALLS = [(8, 1, torch.float16, True), (24, 3, torch.float32, False), (64, 8, torch.float16, False),
         (24, 1, torch.float32, True)]


def _packed(out, inp, bits, group, scale_dtype=torch.float16, seed=0):
    gen = torch.Generator().manual_seed(seed * 1000 + out * 7 + inp * 3 + bits)
    weight = torch.randn(out, inp, generator=gen)
    return pack(bcq_quantize(weight, bits, group, rounds=1), scale_dtype=scale_dtype), gen


def _close(y, expected, rtol=1e-4):
    scale = float(expected.abs().max()) + 1e-6
    err = float((y.float() - expected.float()).abs().max())
    assert err <= rtol * scale, f"max error {err} vs output scale {scale}"


@pytest.mark.parametrize("inp", sorted(GROUPS))
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_native_matches_reference_and_dense(bits, inp):
    for out, rows, scale_dtype, with_bias in CALLS:
        packed, gen = _packed(out, inp, bits, GROUPS[inp], scale_dtype)
        x = torch.randn(rows, inp, generator=gen)
        bias = torch.randn(out, generator=gen) if with_bias else None
        y = cpu_native.native_linear(x, packed.bits, packed.scales, bias, packed.group_size, inp)
        assert y.shape == (rows, out) and y.dtype == torch.float32 and y.is_contiguous()
        _close(y, reference_linear(x, packed, bias))
        _close(y, torch.nn.functional.linear(x, dequantize(packed), bias))


@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 9])
def test_native_row_blocks(rows):
    """Every row block body (full blocks of 2 or 4 rows and each remainder)."""
    packed, gen = _packed(32, 128, 3, 32)
    x = torch.randn(rows, 128, generator=gen)
    _close(cpu_native.native_linear(x, packed.bits, packed.scales, None, 32, 128), reference_linear(x, packed))


def test_native_with_openmp_threads():
    if cpu_native.openmp_library() is None:
        pytest.skip("no OpenMP runtime: the kernel runs on one thread")
    packed, gen = _packed(96, 256, 3, 128)
    x = torch.randn(5, 256, generator=gen)
    torch.set_num_threads(2)   # conftest restores the count
    _close(cpu_native.native_linear(x, packed.bits, packed.scales, None, 128, 256), reference_linear(x, packed))
    assert any(k[-1] == 2 for k in cpu_native._KERNELS if k[0] != "dequant")


def test_native_dequantize_is_exact():
    for (out, inp, group, bits, dtype) in [(24, 48, 16, 2, torch.float16), (64, 256, 128, 3, torch.float32),
                                           (40, 96, 32, 4, torch.float16)]:
        packed, _ = _packed(out, inp, bits, group, dtype)
        dense_t = dequantize(packed).T
        assert torch.equal(cpu_native.native_dequantize_t(packed.bits, packed.scales, group, inp), dense_t)
        assert torch.equal(torch_op.dequantized_weight_t(packed.bits, packed.scales, group, inp), dense_t)


@pytest.mark.parametrize("kernel", ["auto", "native", "dequantize", "reference"])
def test_bcq_linear_cpu_kernels_3d(kernel):
    packed, gen = _packed(40, 96, 3, 32)
    x = torch.randn(2, 3, 96, generator=gen)
    bias = torch.randn(40, generator=gen)
    y = bcq_linear_cpu(x, packed, bias, kernel=kernel)
    assert y.shape == (2, 3, 40)
    _close(y, reference_linear(x.reshape(-1, 96), packed, bias).reshape(2, 3, 40))


def test_auto_switches_to_dequantize_above_threshold(monkeypatch):
    packed, gen = _packed(32, 64, 2, 32)
    x = torch.randn(torch_op.native_max_rows() + 1, 64, generator=gen)
    monkeypatch.setattr(cpu_native, "native_linear", lambda *a, **k: pytest.fail("native used"))
    _close(bcq_linear_cpu(x, packed), reference_linear(x, packed))


def test_fp16_input_takes_dequantize_path():
    packed, gen = _packed(32, 64, 2, 32)
    x = torch.randn(3, 64, generator=gen).half()
    y = bcq_linear_cpu(x, packed)
    assert y.dtype == torch.float16
    _close(y, reference_linear(x, packed), rtol=2e-3)


def test_unsupported_group_falls_back_with_one_warning(caplog):
    packed, gen = _packed(16, 48, 2, 12)   # 12 neither divides nor is a multiple of 32
    x = torch.randn(2, 48, generator=gen)
    with pytest.raises(cpu_native.NativeUnavailable, match="group_size"):
        bcq_linear_cpu(x, packed, kernel="native")
    torch_op._WARNED.clear()
    with caplog.at_level(logging.WARNING, logger="fastc"):
        y1 = bcq_linear_cpu(x, packed)
        y2 = torch.ops.fastc.bcq_linear(x, packed.bits, packed.scales, None, 12, 48)
    warnings = [r for r in caplog.records if "native CPU BCQ kernel unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "group_size" in warnings[0].getMessage()
    _close(y1, reference_linear(x, packed))
    _close(y2, reference_linear(x, packed))


def _op_args(rows_shape=(3,), out=24, inp=96, bits=3, group=32, bias=True):
    packed, gen = _packed(out, inp, bits, group)
    x = torch.randn(*rows_shape, inp, generator=gen)
    b = torch.randn(out, generator=gen) if bias else None
    return x, packed, b


def test_op_eager_and_registered_once():
    x, packed, b = _op_args((2, 3))
    y = torch.ops.fastc.bcq_linear.default(x, packed.bits, packed.scales, b, 32, 96)
    assert y.shape == (2, 3, 24)
    _close(y, reference_linear(x.reshape(-1, 96), packed, b).reshape(2, 3, 24))
    importlib.reload(torch_op)   # a second import must not register again (nor fail)
    import fastc.kernels.bcq  # noqa: F401
    assert registered("bcq_linear")


def test_op_opcheck():
    x, packed, b = _op_args((4,))
    torch.library.opcheck(torch.ops.fastc.bcq_linear.default, (x, packed.bits, packed.scales, b, 32, 96))
    torch.library.opcheck(torch.ops.fastc.bcq_linear.default, (x[:1], packed.bits, packed.scales, None, 32, 96))


class _Model(torch.nn.Module):
    def __init__(self, packed, bias):
        super().__init__()
        self.register_buffer("bits", packed.bits)
        self.register_buffer("scales", packed.scales)
        self.bias = bias
        self.group, self.inp = packed.group_size, packed.in_features

    def forward(self, x):
        h = torch.relu(x) * 2
        return torch.ops.fastc.bcq_linear.default(h, self.bits, self.scales, self.bias, self.group, self.inp) + 1


def test_op_under_torch_compile_eager_backend():
    torch._dynamo.reset()
    x, packed, b = _op_args((3,))
    model = _Model(packed, b)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    _close(compiled(x), model(x))


def test_op_under_aot_eager_with_symbolic_batch():
    torch._dynamo.reset()
    x, packed, b = _op_args((2, 96 // 96))
    model = _Model(packed, b)
    compiled = torch.compile(model, backend="aot_eager", fullgraph=True, dynamic=True)
    for rows in (1, 3, 7, 40):   # 40 rows: the dequantize path
        xr = torch.randn(rows, 96)
        _close(compiled(xr), model(xr))
        _close(compiled(xr), reference_linear(torch.relu(xr) * 2, packed, b) + 1)


def test_op_fake_tensor_shapes():
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv
    x, packed, b = _op_args((5, 2))
    with FakeTensorMode(shape_env=ShapeEnv()) as mode:
        fx = mode.from_tensor(x)
        y = torch.ops.fastc.bcq_linear.default(fx, mode.from_tensor(packed.bits),
                                              mode.from_tensor(packed.scales), mode.from_tensor(b), 32, 96)
    assert tuple(y.shape) == (5, 2, 24) and y.dtype == torch.float32


_TRITON_SCRIPT = r"""
import json, sys, torch
import triton
assert triton.knobs.runtime.interpret
from fastc.kernels.bcq import bcq_quantize, pack, reference_linear
from fastc.kernels.bcq.torch_op import bcq_linear_triton
torch.set_num_threads(1)
results = []
for out, inp, group, bits, rows, bias in [(48, 64, 32, 2, 1, True), (40, 96, 32, 3, 6, False)]:
    gen = torch.Generator().manual_seed(out + inp)
    packed = pack(bcq_quantize(torch.randn(out, inp, generator=gen), bits, group, rounds=1))
    x = torch.randn(rows, inp, generator=gen)
    b = torch.randn(out, generator=gen) if bias else None
    y = bcq_linear_triton(x, packed.bits, packed.scales, b, group, inp)
    ref = reference_linear(x, packed, b)
    results.append([float((y - ref).abs().max()), float(ref.abs().max()), list(y.shape)])
print(json.dumps(results))
"""


def test_cuda_impl_path_in_triton_interpreter():
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, "-c", _TRITON_SCRIPT], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert [r[2] for r in results] == [[1, 48], [6, 40]]
    for err, scale, _ in results:
        assert err <= 1e-4 * scale, (err, scale)


def test_packed_object_path_matches_op():
    x, packed, b = _op_args((3,))
    assert isinstance(packed, PackedBCQ)
    torch.testing.assert_close(bcq_linear_cpu(x, packed, b),
                               torch.ops.fastc.bcq_linear(x, packed.bits, packed.scales, b, 32, 96))
