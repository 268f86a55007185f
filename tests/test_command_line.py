"""The command line: fastc opt / fastc-opt, explain and demo."""
import subprocess
import sys

import pytest

from fastc.cli import main, opt_main

GRAPH = """graph @g(%x: f32[2, 3]) {
  %w: f32[3] = const dense<[1.0, 2.0, 3.0]>
  %v: f32[2, 3] = aten.view.default(%x, [2, 3])
  %a: f32[2, 3] = aten.mul.Tensor(%v, %w)
  %b: f32[2, 3] = aten.mul.Tensor(%v, %w)
  %c: f32[2, 3] = aten.add.Tensor(%a, %b)
  return (%c,)
}
"""


def test_opt_runs_passes_and_prints(tmp_path, capsys):
    path = tmp_path / "g.fx"
    path.write_text(GRAPH)
    assert main(["opt", "-p", "remove-noops,cse,dead-code", str(path)]) == 0
    out = capsys.readouterr().out
    assert "aten.view" not in out and out.count("aten.mul.Tensor") == 1
    assert "%c: f32[2, 3] = aten.add.Tensor(%a, %a)" in out


def test_fastc_opt_entry_point_and_list(capsys):
    assert opt_main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("dead-code", "cse", "fold-constants{max_new_elements=4096}", "fold-batchnorm", "remove-noops"):
        assert name in out


def test_opt_reports_parse_errors_with_file_line_column(tmp_path, capsys):
    path = tmp_path / "bad.fx"
    path.write_text(GRAPH.replace("%v, %w)\n  %b", "%v %w)\n  %b"))
    assert main(["opt", str(path)]) == 1
    assert f"{path}:4:" in capsys.readouterr().err


def test_opt_bad_pipeline(tmp_path, capsys):
    path = tmp_path / "g.fx"
    path.write_text(GRAPH)
    assert main(["opt", "-p", "dead-cod", str(path)]) == 2
    assert "unknown pass 'dead-cod'" in capsys.readouterr().err


def test_opt_reads_constants_beside_the_file(tmp_path, capsys):
    import torch
    from safetensors.torch import save_file
    save_file({"w": torch.tensor([1.0, 2.0, 3.0])}, str(tmp_path / "g.safetensors"))
    (tmp_path / "g.fx").write_text(GRAPH.replace("const dense<[1.0, 2.0, 3.0]>", "const @w"))
    assert main(["opt", "-p", "cse", str(tmp_path / "g.fx")]) == 0
    assert "const dense<[1.0, 2.0, 3.0]>" in capsys.readouterr().out


def test_explain_bundled_model(capsys):
    assert main(["explain", "cnn"]) == 0
    out = capsys.readouterr().out
    assert "fold-batchnorm" in out and "frozen inputs" in out


def test_demo_checks_against_eager(capsys):
    assert main(["demo", "--model", "cnn", "--runs", "2"]) == 0
    out = capsys.readouterr().out
    assert "OK" in out and "speed-up" in out


def test_fastc_command_installed():
    result = subprocess.run([sys.executable, "-m", "fastc.cli", "opt", "--list"], capture_output=True, text=True)
    assert result.returncode == 0 and "fold-batchnorm" in result.stdout


def test_unknown_subcommand():
    with pytest.raises(SystemExit):
        main(["frobnicate"])
