"""fastc leaves the user's logging as it found it, and its fallbacks are seen without any
logging set up."""
from __future__ import annotations

from subprocess_run import run_python


def test_user_basic_config_after_compiling_still_applies():
    r = run_python("""
        import logging, torch
        c = torch.compile(lambda x: torch.softmax(x, -1) * 2, backend="fastc",
                          options={"kernel_choice": "generated"})
        c(torch.randn(4, 8))
        import fastc
        assert fastc.reports()[-1].generated_kernels, "native code must have been built"
        logging.basicConfig(level=logging.INFO, format="USER|%(name)s|%(message)s")
        logging.getLogger("app").info("hello")
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "USER|app|hello" in r.stderr, r.stderr[-3000:]


def test_torch_logs_prints_each_fastc_line_once():
    r = run_python("""
        import torch
        c = torch.compile(lambda x: torch.softmax(x, -1) * 2, backend="fastc",
                          options={"kernel_choice": "generated"})
        c(torch.randn(4, 8))
    """, env={"TORCH_LOGS": "+fastc"})
    assert r.returncode == 0, r.stderr[-3000:]
    lines = [line for line in r.stderr.splitlines() if "kernel plan:" in line]
    assert len(lines) == 1, r.stderr[-3000:]


def test_a_graph_that_runs_eagerly_says_so_without_logging_configured():
    r = run_python("""
        import torch
        from fastc.passes import Pass, register
        from dataclasses import dataclass

        @register
        @dataclass(frozen=True)
        class Broken(Pass):
            name = "user-broken"
            def run(self, gm, ctx):
                raise RuntimeError("this pass is broken")

        c = torch.compile(lambda x: x * 2, backend="fastc", options={"passes": "user-broken"})
        print(c(torch.ones(2)))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "this pass is broken" in r.stderr and "running it as captured" in r.stderr


def test_a_kernel_run_as_aten_says_so_once_per_graph():
    r = run_python("""
        import torch
        # bfloat16 is planned on cpu and refused by its code generator (no __truncsfbf2)
        c = torch.compile(lambda x: torch.sin(x) * 2 + 1, backend="fastc", options={"target": "cpu"})
        for _ in range(3):
            c(torch.rand(8, dtype=torch.bfloat16))
    """)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stderr.count("run as ATen") == 1, r.stderr[-3000:]
