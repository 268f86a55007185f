"""Dynamo's control-flow exceptions pass through fastc: dynamic=True with LayerNorm compiles
(before: caught as a capture failure with an empty reason, and the model ran eagerly)."""
from __future__ import annotations

import torch
import torch._dynamo
import torch.nn as nn

import fastc


def test_dynamic_layer_norm_compiles():
    torch._dynamo.reset()
    m = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.GELU()).eval()
    before = len(fastc.reports())
    c = torch.compile(m, backend="fastc", dynamic=True)
    with torch.no_grad():
        for n in (2, 3, 5):
            x = torch.randn(n, 8)
            torch.testing.assert_close(c(x), m(x), rtol=1e-4, atol=1e-4)
    reports = fastc.reports()[before:]
    assert reports and all(r.fallback is None for r in reports), [r.fallback for r in reports]
    assert all(r.kind == "inference" for r in reports)


def test_a_capture_failure_reason_is_never_empty():
    from fastc.graph_compiler import describe_error
    assert describe_error(RuntimeError("")) == "RuntimeError (no message)"
    assert describe_error(ValueError("bad")) == "ValueError: bad"
