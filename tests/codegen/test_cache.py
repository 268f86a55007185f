"""Kernel caches: generated specs on disk (hit, corrupted entry rebuilt, disabled) and one
compilation per distinct source per process."""
import json

import pytest
import torch

from codegen_cases import NEEDS_INTERPRETER, mark, trace

pytestmark = NEEDS_INTERPRETER


def _kernel(scale=2.0):
    from fastc.ir.kernel_plan import KernelPlan
    gm = mark(trace(lambda x: (x * scale).exp(), torch.randn(3, 4)), "pointwise")
    return KernelPlan.of(gm).kernels[0], gm


def _entries(root):
    return sorted((root / "kernels").glob("*.json")) if (root / "kernels").exists() else []


def test_second_lowering_is_a_disk_hit(_private_kernel_cache):
    from fastc.codegen.cache import STATS
    from fastc.codegen.triton import lower
    kernel, gm = _kernel()
    hits = STATS["disk_hits"]
    first = lower(kernel, gm)
    assert len(_entries(_private_kernel_cache)) == 1
    second = lower(kernel, gm)
    assert STATS["disk_hits"] == hits + 1
    assert second.source == first.source
    x = torch.randn(3, 4)
    torch.testing.assert_close(second.run(x)[0], (x * 2.0).exp())


def test_different_kernels_and_options_get_different_entries(_private_kernel_cache):
    from fastc.codegen.triton import lower
    for scale in (2.0, 3.0):
        lower(*_kernel(scale))
    lower(*_kernel(2.0), options={"target": "triton"})
    assert len(_entries(_private_kernel_cache)) == 3


@pytest.mark.parametrize("damage", ["garbage", "checksum", "spec"])
def test_corrupted_entry_is_ignored_and_rebuilt(_private_kernel_cache, damage):
    from fastc.codegen.cache import STATS
    from fastc.codegen.triton import lower
    kernel, gm = _kernel()
    good = lower(kernel, gm).source
    (path,) = _entries(_private_kernel_cache)
    entry = json.loads(path.read_text())
    if damage == "garbage":
        path.write_text("{not json")
    elif damage == "checksum":
        entry["spec"] = entry["spec"].replace("tl.exp", "tl.log")
        path.write_text(json.dumps(entry))
    else:  # verifies, but is not a spec: rebuilt all the same
        from fastc.codegen.cache import sha256
        path.write_text(json.dumps({"key": path.stem, "spec": "[1, 2]", "sha256": sha256("[1, 2]")}))
    corrupt = STATS["disk_corrupt"]
    rebuilt = lower(kernel, gm)
    assert rebuilt.source == good
    assert STATS["disk_corrupt"] == corrupt + (damage != "spec")
    assert json.loads(json.loads(path.read_text())["spec"])["source"] == good  # the entry is repaired
    x = torch.randn(3, 4)
    torch.testing.assert_close(rebuilt.run(x)[0], (x * 2.0).exp())


@pytest.mark.parametrize("value", ["0", "off"])
def test_disabled_cache_writes_nothing(tmp_path, monkeypatch, value):
    from fastc.codegen.cache import cache_dir
    from fastc.codegen.triton import lower
    monkeypatch.setenv("FASTC_CACHE_DIR", value)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() is None
    kernel, gm = _kernel(5.0)
    g = lower(kernel, gm)
    x = torch.randn(3, 4)
    torch.testing.assert_close(g.run(x)[0], (x * 5.0).exp())
    assert not any(tmp_path.rglob("*.json"))


def test_identical_source_compiles_once_per_process():
    from fastc.codegen.cache import STATS
    from fastc.codegen.triton import lower
    a = lower(*_kernel(7.0))
    b = lower(*_kernel(7.0), use_cache=False)
    x = torch.randn(3, 4)
    a.run(x)
    compiled = STATS["compiled"]
    b.run(x)
    assert STATS["compiled"] == compiled and a.fn is b.fn


def test_cache_key_covers_versions(monkeypatch):
    from fastc.codegen import cache
    before = cache.spec_key("kernel", {})
    monkeypatch.setattr(cache, "versions", lambda: {"torch": "0", "triton": "0", "fastc_codegen": "0"})
    assert cache.spec_key("kernel", {}) != before
