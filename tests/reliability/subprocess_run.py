"""Runs a snippet in a fresh Python process, as a user's script would run: crashes (an abort,
a segfault) are reported as a failed test rather than taking pytest down."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run_python(code: str, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if k not in ("TORCH_LOGS", "FASTC_DEBUG")}
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=full_env, timeout=timeout)
