"""The command line: fastc opt / fastc-opt, explain and demo."""
import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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
    from safetensors.torch import save_file
    save_file({"w": torch.tensor([1.0, 2.0, 3.0])}, str(tmp_path / "g.safetensors"))
    (tmp_path / "g.fx").write_text(GRAPH.replace("const dense<[1.0, 2.0, 3.0]>", "const @w"))
    assert main(["opt", "-p", "cse", str(tmp_path / "g.fx")]) == 0
    assert "const dense<[1.0, 2.0, 3.0]>" in capsys.readouterr().out


def test_explain_with_lossy_passes(capsys):
    spec = "shift-add{bits=4,mixed=false,activation_aware=false,rounds=0}"
    assert main(["explain", "gpt", "--target", "aten", "--lossy", spec, "--accuracy-budget", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "lossy shift-add{bits=4.0," in out and "agreement 1 ->" in out and "kept: " in out


def test_explain_lossy_needs_a_bundled_model(tmp_path, capsys):
    path = tmp_path / "g.fx"
    path.write_text("graph @g(%x: f32[2]) {\n  return (%x,)\n}\n")
    assert main(["explain", str(path), "--lossy", "shift-add"]) == 2
    assert "--lossy needs a bundled model" in capsys.readouterr().err


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


# -- ordinary mistakes: one line naming the problem, a non-zero status, no traceback ---------------
def run_cli(argv, capsys, entry=main):
    """Runs the command as a user would (argparse's SystemExit included): (status, stdout, stderr)."""
    try:
        status = entry(argv)
    except SystemExit as e:
        status = e.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, err, *phrases):
    assert status not in (0, None), err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    # Ours are exactly one line; argparse's own form is its usage, then one error line.
    assert len(errors) == 1 and (len(lines) == 1 or lines[0].startswith("usage:")), err
    for phrase in phrases:
        assert phrase in errors[0], err


@pytest.fixture
def files(tmp_path):
    (tmp_path / "binary.fx").write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe\x00\x00")
    (tmp_path / "nul.fx").write_bytes(b"graph @g\x00\x00")
    (tmp_path / "folder.fx").mkdir()
    (tmp_path / "good.fx").write_text(GRAPH)
    # The declared type contradicts the op (f32[2, 3] + f32[2, 3] is not f32[8]).
    (tmp_path / "mistyped.fx").write_text(GRAPH.replace("%c: f32[2, 3] = aten.add", "%c: f32[8] = aten.add"))
    (tmp_path / "corrupt.safetensors").write_bytes(b"not a safetensors file")
    return tmp_path


@pytest.mark.parametrize("command", ["explain", "opt", "fastc-opt"])
@pytest.mark.parametrize("name, phrase", [
    ("missing.fx", "no such file"),
    ("folder.fx", "is a directory"),
    ("binary.fx", "not a text file"),
    ("nul.fx", "not a text file"),
])
def test_unreadable_files(files, capsys, command, name, phrase):
    path = str(files / name)
    argv, entry = ([path], opt_main) if command == "fastc-opt" else ([command, path], main)
    status, _, err = run_cli(argv, capsys, entry)
    assert_one_line_error(status, err, f"{path}: error: {phrase}")


@pytest.mark.parametrize("argv", [["explain"], ["opt"], []])
def test_type_contradicting_its_op_is_reported_with_line_and_column(files, capsys, argv):
    path = str(files / "mistyped.fx")
    status, out, err = run_cli([*argv, path], capsys, main if argv else opt_main)
    assert_one_line_error(status, err, f"{path}:6:16: error: %c is declared f32[8], but aten.add.Tensor gives f32[2, 3]")
    assert out == ""


def test_binary_standard_input(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"\xff\xfe\x00")))
    status, _, err = run_cli([], capsys, opt_main)
    assert_one_line_error(status, err, "<stdin>: error: not a text file")


def test_explain_unknown_model(capsys):
    status, _, err = run_cli(["explain", "nope"], capsys)
    assert status == 2
    assert_one_line_error(status, err, "fastc explain: error: unknown model 'nope'", "cnn")


@pytest.mark.parametrize("spec, phrase", [
    ("dead-cod", "unknown pass 'dead-cod'"),
    ("fold-constants{max_new_elements=lots}", "max_new_elements='lots' is not valid"),
    ("cse{depth=3}", "has no option 'depth'"),
    ("cse{", "malformed pass pipeline"),
])
def test_opt_bad_pass_specs(files, capsys, spec, phrase):
    status, _, err = run_cli(["opt", "-p", spec, str(files / "good.fx")], capsys)
    assert status == 2
    assert_one_line_error(status, err, "fastc opt: error:", phrase)


@pytest.mark.parametrize("constants, phrase", [
    ("missing.safetensors", "no such file"),
    ("folder.fx", "is a directory"),
    ("corrupt.safetensors", "cannot read constants"),
])
def test_opt_bad_constants_file(files, capsys, constants, phrase):
    path = str(files / constants)
    status, _, err = run_cli(["opt", "--constants", path, str(files / "good.fx")], capsys)
    assert_one_line_error(status, err, f"{path}: error:", phrase)


def test_opt_corrupt_constants_beside_the_file(files, capsys):
    (files / "good.safetensors").write_bytes(b"\x00" * 3)
    status, _, err = run_cli(["opt", str(files / "good.fx")], capsys)
    assert_one_line_error(status, err, "good.safetensors: error: cannot read constants")


@pytest.mark.parametrize("argv, phrase", [
    (["demo", "--runs", "0"], "argument --runs"),
    (["demo", "--runs", "-2"], "argument --runs"),
    (["demo", "--runs", "many"], "argument --runs"),
    (["opt", "--inline-limit", "-1"], "argument --inline-limit"),
    (["accuracy", "--model", "digits-cnn", "--calibration", "0"], "argument --calibration"),
    (["accuracy", "--train", "digits-vit", "--steps", "-5"], "argument --steps"),
    (["explain", "--target", "tpu"], "argument --target"),
])
def test_bad_counts_and_choices_are_usage_errors(capsys, argv, phrase):
    status, _, err = run_cli(argv, capsys)
    assert status == 2
    assert_one_line_error(status, err, phrase)


def test_accuracy_transform_out_of_range(capsys):
    status, out, err = run_cli(["accuracy", "--model", "digits-cnn", "--transform", "prune-200"], capsys)
    assert status == 2 and out == ""
    assert_one_line_error(status, err, "fastc accuracy: error: transform 'prune-200'", "[0, 1]")


def test_bad_fastc_setting_in_the_environment(capsys, monkeypatch):
    monkeypatch.setenv("FASTC_ON_ERROR", "explode")
    status, out, err = run_cli(["demo", "--model", "cnn", "--runs", "1"], capsys)
    assert status == 2 and out == ""
    assert_one_line_error(status, err, "fastc demo: error:", "on_error='explode'")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA message")
def test_explain_triton_without_cuda(capsys):
    status, _, err = run_cli(["explain", "cnn", "--target", "triton"], capsys)
    assert_one_line_error(status, err, "fastc explain: error:", "needs a CUDA device")


def test_run_demo_rejects_zero_runs():
    from fastc.demo import run_demo
    with pytest.raises(ValueError, match="at least 1"):
        run_demo(["cnn"], runs=0)


@pytest.mark.parametrize("argv, phrase", [
    (["explain", "nope"], "fastc explain: error: unknown model 'nope'"),
    (["explain", "{dir}/missing.fx"], "missing.fx: error: no such file"),
    (["demo", "--runs", "0"], "fastc demo: error: argument --runs"),
    (["accuracy", "--model", "digits-cnn", "--transform", "prune-200"], "fastc accuracy: error:"),
])
def test_mistakes_through_python_m(files, argv, phrase):
    """As a user runs it: `python -m fastc.cli ...` in its own process."""
    argv = [a.replace("{dir}", str(files)) for a in argv]
    result = subprocess.run([sys.executable, "-m", "fastc.cli", *argv], capture_output=True, text=True)
    assert_one_line_error(result.returncode, result.stderr, phrase)


def test_mistakes_through_the_fastc_opt_script(files):
    beside = Path(sys.executable).parent / "fastc-opt"  # the venv's console script
    script = str(beside) if beside.exists() else shutil.which("fastc-opt")
    result = subprocess.run([script, str(files / "binary.fx")], capture_output=True, text=True)
    assert_one_line_error(result.returncode, result.stderr, "binary.fx: error: not a text file")
    result = subprocess.run([script, str(files / "mistyped.fx")], capture_output=True, text=True)
    assert_one_line_error(result.returncode, result.stderr, "mistyped.fx:6:16: error: %c is declared f32[8]")
