"""A debug dump never changes what runs: an unusable directory only skips the dump (with one
warning), "" means no dump (as FASTC_DEBUG="" does), and a reused directory holds only this
process's graphs."""
from __future__ import annotations

import os

import pytest
import torch
import torch._dynamo

import fastc

from subprocess_run import run_python


def _run(debug_dir):
    torch._dynamo.reset()
    before = len(fastc.reports())
    c = torch.compile(lambda x: torch.softmax(x, -1) * 3, backend="fastc", options={"debug_dir": debug_dir})
    x = torch.randn(4, 8)
    torch.testing.assert_close(c(x), torch.softmax(x, -1) * 3)
    return fastc.reports()[before:]


def test_debug_dir_that_is_a_file(tmp_path, caplog):
    path = tmp_path / "a-file"
    path.write_text("not a directory")
    reports = _run(str(path))
    assert reports and all(r.fallback is None and r.target == "cpu" for r in reports)
    assert "cannot write the debug dump" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_debug_dir(tmp_path):
    tmp_path.chmod(0o500)
    try:
        reports = _run(str(tmp_path / "dump"))
    finally:
        tmp_path.chmod(0o700)
    assert all(r.fallback is None for r in reports)


def test_unwritable_debug_dir_as_root_too(tmp_path, caplog):
    # /proc cannot be written even by root
    reports = _run("/proc/fastc-debug")
    assert all(r.fallback is None for r in reports)
    assert "cannot write the debug dump" in caplog.text


def test_empty_debug_dir_means_no_dump(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _run("")
    monkeypatch.setenv("FASTC_DEBUG", "")
    _run(None)
    assert os.listdir(tmp_path) == []


def test_reused_debug_dir_holds_only_this_process(tmp_path):
    script = """
        import torch
        c = torch.compile(lambda x, y: (x.sin() if {branch} else x.cos()) + y, backend="fastc",
                          options={{"debug_dir": {dir!r}}})
        for n in range({graphs}):
            torch._dynamo.reset()
            c(torch.randn(n + 1), torch.randn(n + 1))
    """
    first = run_python(script.format(branch=True, dir=str(tmp_path), graphs=3))
    assert first.returncode == 0, first.stderr[-2000:]
    assert len([d for d in os.listdir(tmp_path) if d.startswith("graph_")]) == 3
    (tmp_path / "notes.txt").write_text("the user's own file")
    second = run_python(script.format(branch=False, dir=str(tmp_path), graphs=1))
    assert second.returncode == 0, second.stderr[-2000:]
    folders = [d for d in os.listdir(tmp_path) if d.startswith("graph_")]
    assert len(folders) == 1
    captured = (tmp_path / folders[0] / "00-captured.fx").read_text()
    assert "cos" in captured and "sin" not in captured
    assert (tmp_path / "notes.txt").exists()
