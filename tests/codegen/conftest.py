"""Fixtures for tests/codegen: generated Triton kernels run by Triton's interpreter.

The interpreter must be on before triton is used (scripts/test.sh runs pytest with
TRITON_INTERPRET=1); each test module skips itself otherwise. The disk cache of generated
kernels points at a fresh directory per test, so tests neither read nor fill ~/.cache/fastc.
"""
import pytest


@pytest.fixture(autouse=True)
def _private_kernel_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTC_CACHE_DIR", str(tmp_path / "fastc-cache"))
    yield tmp_path / "fastc-cache"
