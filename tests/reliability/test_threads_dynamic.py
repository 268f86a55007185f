"""One compiled model called from several threads at once with different shapes (dynamic=True):
every result matches eager and the process survives (before: per-call sizes lived on the shared
runner, and kernels wrote past their outputs)."""
from __future__ import annotations

import pytest

from subprocess_run import run_python

SCRIPT = """
import sys, threading, torch
sys.setswitchinterval(1e-6)   # switch threads as often as possible
torch.manual_seed(0)

def f(x, w):
    h = torch.softmax(x * 2 + 1, -1)
    return (h * w).sum(-1), torch.nn.functional.gelu(x).mean(0)

c = torch.compile(f, backend="fastc", dynamic=True, options=dict(target="{target}", kernel_choice="{choice}"))
w = torch.randn(1)
c(torch.randn(3, 19), w); c(torch.randn(4, 20), w)
bad, done = [], []

def work(n):
    for i in range({calls}):
        x = torch.randn(n, 16 + n)
        got, expected = c(x, w), f(x, w)
        if not all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(got, expected)):
            bad.append((n, i))
    done.append(n)

threads = [threading.Thread(target=work, args=(n,)) for n in (2, 3, 5, 7)]
[t.start() for t in threads]; [t.join() for t in threads]
import fastc
print("generated", sum(len(r.generated_kernels) for r in fastc.reports()))
print("threads done", len(done), "wrong results", len(bad))
"""


@pytest.mark.parametrize("target,choice,calls", [("cpu", "generated", 1500), ("cpu", "measure", 500),
                                                 ("aten", "measure", 200)])
def test_threads_with_dynamic_shapes(target, choice, calls):
    r = run_python(SCRIPT.format(target=target, choice=choice, calls=calls))
    assert r.returncode == 0, f"exit {r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"
    assert "threads done 4 wrong results 0" in r.stdout, r.stdout + r.stderr[-3000:]
    if target == "cpu":
        assert "generated 0" not in r.stdout  # native kernels ran
