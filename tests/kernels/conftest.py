"""Fixtures for tests/kernels.

The Triton kernels run on this CPU-only machine in Triton's interpreter, which must be chosen
before triton is first imported and then holds for the whole process. Rather than set
TRITON_INTERPRET here (it would leak into every other test folder, or come too late if one of
them imported triton first), the kernel cases run once per session in a child process that has
TRITON_INTERPRET=1; see bcq_kernel_cases.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

CASES_SCRIPT = Path(__file__).with_name("bcq_kernel_cases.py")


@pytest.fixture(scope="session")
def bcq_interpreter_results(tmp_path_factory):
    """Errors of each interpreted kernel case against the reference path and the dense matmul."""
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("bcq_interpreter") / "results.json"
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, str(CASES_SCRIPT), str(out)], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"interpreted BCQ kernel cases failed (exit {done.returncode}):\n"
                    f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return json.loads(out.read_text())


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The quantizer runs many small per-group ops; on a 2-core machine shared with other jobs,
    OpenMP threads make them an order of magnitude slower. Restored after each test."""
    import torch
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
