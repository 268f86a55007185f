"""Capture: freezing in inference, gradients in training, including ops whose decompositions
are wrong under autograd."""
import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from fastc.report import REPORTS


class CausalAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(16, 48)

    def forward(self, x):
        q, k, v = self.qkv(x).view(2, 5, 3, 2, 8).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)


def test_sdpa_gradients_match_eager():
    # Regression: core ATen's decomposition of CPU flash attention differentiates wrongly.
    torch.manual_seed(0)
    model, x = CausalAttention(), torch.randn(2, 5, 16)
    ref = copy.deepcopy(model)
    ref(x).square().sum().backward()
    torch._dynamo.reset()
    out = torch.compile(model, backend="fastc", options={"on_error": "raise"})(x)
    out.square().sum().backward()
    torch.testing.assert_close(model.qkv.weight.grad, ref.qkv.weight.grad, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.qkv.bias.grad, ref.qkv.bias.grad, rtol=1e-4, atol=1e-5)


def test_inference_freezes_weights_and_skips_them_at_call_time():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    torch._dynamo.reset()
    start = len(REPORTS)
    compiled = torch.compile(model, backend="fastc", options={"on_error": "raise"})
    x = torch.randn(3, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))
    (report,) = REPORTS[start:]
    assert report.kind == "inference" and report.frozen_inputs == 4
    assert report.ops_final == {"aten.addmm.default": 2, "aten.relu.default": 1}


def test_buffers_mutated_in_the_graph_are_not_frozen():
    # BatchNorm in training mode under no_grad updates its running statistics in place.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)).train()
    ref = copy.deepcopy(model)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="fastc", options={"on_error": "raise"})
    x = torch.randn(2, 3, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), ref(x))
        torch.testing.assert_close(compiled(x), ref(x))
    torch.testing.assert_close(model[1].running_mean, ref[1].running_mean)
    torch.testing.assert_close(model[1].running_var, ref[1].running_var)
