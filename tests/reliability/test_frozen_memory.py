"""A model that fits eagerly fits compiled: with frozen weights (the default) fastc holds no
second copy of a weight it uses unchanged. Measured as the peak resident memory compiling and
running a model adds in a fresh process, after the native compiler's libraries are loaded, for
two sizes of one model: the growth per MiB of extra weights. Compiling itself (tracing, code
generation) has a fixed cost of a few tens of MiB whatever the weights; see docs/cpu.md."""
from __future__ import annotations

import pytest

from subprocess_run import run_python

SCRIPT = """
import resource, torch, torch.nn as nn
torch.manual_seed(0)

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

warm = torch.compile(lambda x: torch.relu(x) * 2, backend="fastc", options={{"target": "{target}"}})
warm(torch.randn(8))  # loads torch-mlir and LLVM before anything is measured

width = 1024
model = nn.Sequential(*[nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
                        for _ in range({layers})]).eval()   # 4 MiB a layer
weights = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
x = torch.randn(4, width)
with torch.no_grad():
    expected = model(x)
    before = peak_mib()
    compiled = torch.compile(model, backend="fastc", options={{"target": "{target}"}})
    torch.testing.assert_close(compiled(x), expected, rtol=1e-4, atol=1e-4)
    compiled(x)
import fastc
print("frozen", sum(r.frozen_inputs for r in fastc.reports()))
print(f"weights {{weights:.1f}} MiB, peak grew {{peak_mib() - before:.1f}} MiB")
print("SIZES", weights, peak_mib() - before)
"""


@pytest.mark.parametrize("target", ["cpu", "aten"])
def test_frozen_weights_are_not_copied(target):
    sizes = []
    for layers in (4, 28):
        r = run_python(SCRIPT.format(target=target, layers=layers))
        assert r.returncode == 0, r.stderr[-3000:]
        assert "frozen 0" not in r.stdout
        sizes.append([float(v) for v in r.stdout.split("SIZES")[1].split()])
    (small_weights, small_growth), (large_weights, large_growth) = sizes
    per_mib = (large_growth - small_growth) / (large_weights - small_weights)
    # Before: fold-constants copied every transposed weight (about 1.4 MiB per MiB of weights).
    assert per_mib < 0.3, sizes
