"""Real models through generated Triton kernels (Triton's interpreter on CPU, tiny sizes):
outputs match eager, and every model runs generated kernels, not only ATen fallbacks."""
import os

import pytest
import torch

import model_zoo
from fastc.report import REPORTS

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                reason="needs TRITON_INTERPRET=1 set before Python starts (scripts/test.sh sets it)")

MODELS = ["mlp", "conv_bn", "attention_block", "gpt2", "llama", "bert", "vit", "resnet", "convnext",
          "mobilenet_v2"]
KERNEL_TABLE: list[tuple[str, int, int, float]] = []


@pytest.mark.parametrize("name", MODELS)
def test_model_runs_generated_kernels(name):
    model, inputs = model_zoo.build(name)
    model.eval()
    torch._dynamo.reset()
    start = len(REPORTS)
    compiled = torch.compile(model, backend="fastc",
                             options={"target": "triton-interpret", "on_error": "raise"})
    with torch.no_grad():
        expected = model_zoo.main_output(model(**inputs))
        actual = model_zoo.main_output(compiled(**inputs))
    err = (actual - expected).abs().max().item()
    reports = REPORTS[start:]
    generated = sum(len(r.generated_kernels) for r in reports)
    aten = sum(len(r.aten_kernels) for r in reports)
    KERNEL_TABLE.append((name, generated, aten, err))
    print(f"{name}: {generated} generated kernels, {aten} planned kernels as ATen, max error {err:.2e}")
    for r in reports:
        for kernel, reason in r.aten_kernels:
            print(f"    {kernel}: {reason}")
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4)
    assert all(r.target == "triton-interpret" and r.fallback is None for r in reports)
    assert generated > 0


def test_dynamic_shapes_one_compilation_serves_several_sizes():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.GELU(), torch.nn.LayerNorm(32),
                                torch.nn.Linear(32, 8), torch.nn.Softmax(-1)).eval()
    torch._dynamo.reset()
    start = len(REPORTS)
    compiled = torch.compile(model, backend="fastc", dynamic=True,
                             options={"target": "triton-interpret", "on_error": "raise"})
    with torch.no_grad():
        for batch in (3, 5, 9):
            x = torch.randn(batch, 2, 16)
            torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    reports = REPORTS[start:]
    assert len(reports) == 1, [r.text() for r in reports]
    assert len(reports[0].generated_kernels) >= 3


def test_max_autotune_through_torch_compile():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.LayerNorm(32)).eval()
    torch._dynamo.reset()
    start = len(REPORTS)
    compiled = torch.compile(model, backend="fastc", options={
        "target": "triton-interpret", "mode": "max-autotune", "on_error": "raise"})
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    (report,) = REPORTS[start:]
    assert len(report.generated_kernels) == 2
