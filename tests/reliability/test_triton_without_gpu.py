"""target="triton" without a CUDA device is an option error that names the option and the valid
targets, and leaves nothing behind: triton-interpret still compiles afterwards in that process."""
from __future__ import annotations

import pytest
import torch

from subprocess_run import run_python


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_triton_target_without_cuda_is_an_option_error():
    r = run_python("""
        import os, sys, torch
        f = lambda x: torch.relu(x) * 2
        try:
            torch.compile(f, backend="fastc", options={"target": "triton"})(torch.randn(4))
        except Exception as e:
            print("ERROR", type(e).__name__, e)
        assert "triton" not in sys.modules or os.environ.get("TRITON_INTERPRET") == "1"
        c = torch.compile(f, backend="fastc", options={"target": "triton-interpret", "on_error": "raise"})
        torch._dynamo.reset()
        x = torch.randn(4)
        torch.testing.assert_close(c(x), f(x))
        import fastc
        print("generated", fastc.reports()[-1].generated_kernels)
    """, env={"TRITON_INTERPRET": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "target='triton' needs a CUDA device" in r.stdout and "valid here: auto, cpu" in r.stdout
    assert "generated []" not in r.stdout
