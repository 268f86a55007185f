"""Options are validated with errors that name the key, the value and the valid choices; each
option does what it says."""
import glob
import os

import pytest
import torch
import torch.nn as nn

import fastc
from fastc import make_options
from fastc.passes import Pass, register
from fastc.report import REPORTS


def test_defaults():
    opts = make_options({})
    assert opts.freeze and opts.mode == "default" and opts.passes is None


@pytest.mark.parametrize("options, pattern", [
    ({"fuse_max": 3}, r"unknown fastc option 'fuse_max' \(valid: debug_dir, freeze, passes, disable, verify, on_error, target, kernel_choice, mode, lossy, calibration, accuracy_budget, accuracy_metric, choices, tuning, cost_model\)"),
    ({"choices": "fastest"}, r"choices='fastest' is not valid \(valid: a fastc.costmodel.Choices"),
    ({"accuracy_budget": -1}, r"accuracy_budget=-1 is not valid \(valid: a finite number >= 0"),
    ({"accuracy_budget": "1%"}, r"accuracy_budget='1%' is not valid"),
    ({"freeze": "yes"}, r"fastc option freeze='yes' is not valid \(valid: True or False\)"),
    ({"on_error": "ignore"}, r"on_error='ignore' is not valid \(valid: fallback, raise\)"),
    ({"passes": "dead-code,nope"}, r"passes='dead-code,nope': unknown pass 'nope' \(valid: "),
    ({"disable": ["cse", "nope"]}, r"disable=\['cse', 'nope'\] is not valid \(valid: a list of pass names"),
    ({"debug_dir": 3}, r"debug_dir=3 is not valid"),
    ({"target": "cuda"}, r"target='cuda' is not valid \(valid: auto, cpu, aten, triton, triton-interpret\)"),
    ({"kernel_choice": "fast"}, r"kernel_choice='fast' is not valid \(valid: measure, generated\)"),
])
def test_bad_options_raise_naming_key_value_and_choices(options, pattern):
    with pytest.raises(ValueError, match=pattern):
        make_options(options)


def test_bad_mode():
    with pytest.raises(ValueError, match=r"fastc mode 'fastest' is not valid \(valid: default, max-autotune"):
        make_options({}, mode="fastest")
    assert make_options({}, mode="max-autotune").mode == "max-autotune"


def test_bad_option_through_torch_compile():
    compiled = torch.compile(nn.Linear(2, 2), backend="fastc", options={"bogus": 1})
    with pytest.raises(Exception, match="unknown fastc option 'bogus'"):
        compiled(torch.randn(1, 2))


def _compile_and_run(model, x, **options):
    torch._dynamo.reset()
    start = len(REPORTS)
    compiled = torch.compile(model, backend="fastc", options={"on_error": "raise", **options})
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x), rtol=1e-5, atol=1e-5)
    return REPORTS[start:]


def _convbn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).eval()
    model[1].running_mean.normal_()
    return model, torch.randn(2, 3, 6, 6)


def test_passes_and_disable_choose_the_pipeline():
    model, x = _convbn()
    (report,) = _compile_and_run(model, x, passes="dead-code")
    assert [p.name for p in report.passes] == ["dead-code"]
    (report,) = _compile_and_run(model, x, disable=["fold-batchnorm"])
    assert "fold-batchnorm" not in [p.name for p in report.passes]
    assert report.ops_final.get("aten._native_batch_norm_legit_no_training.default") == 1


def test_freeze_false_keeps_weights_as_inputs():
    model, x = _convbn()
    (report,) = _compile_and_run(model, x, freeze=False)
    assert report.frozen_inputs == 0
    (report,) = _compile_and_run(model, x)
    assert report.frozen_inputs == 6  # conv weight and bias, BN weight, bias, mean, var


def test_debug_dir_dumps_every_stage(tmp_path):
    model, x = _convbn()
    _compile_and_run(model, x, debug_dir=str(tmp_path))
    (graph_dir,) = glob.glob(str(tmp_path / "graph_*_inference"))
    names = sorted(os.listdir(graph_dir))
    assert names[0] == "00-captured.fx" and "01-frozen.fx" in names
    assert {"02-remove-noops.fx", "03-fold-batchnorm.fx", "report.json", "constants.safetensors"} <= set(names)
    # then one dump per pass of the pipeline, numbered in its order
    from fastc.options import make_options
    from fastc.pipeline import default_pipeline
    passes = [p.name for p in default_pipeline(make_options({"target": "cpu"}, None))]
    dumped = [n for n in names if n[:2].isdigit() and n.endswith(".fx") and n[:2] >= "02"]
    assert dumped == [f"{i + 2:02d}-{name}.fx" for i, name in enumerate(passes)][:len(dumped)]
    assert f"{passes.index('dead-code') + 2:02d}-dead-code.fx" in names


def test_fastc_debug_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("FASTC_DEBUG", str(tmp_path))
    model, x = _convbn()
    _compile_and_run(model, x)
    assert glob.glob(str(tmp_path / "graph_*" / "00-captured.fx"))


@register
class _Breaks(Pass):
    """Test-only pass that always fails, to exercise fastc's error handling on a graph."""
    name = "test-only-breaks"

    def run(self, gm, ctx):
        raise RuntimeError("deliberately broken pass")


@register
class _Wrong(Pass):
    """Test-only pass that silently changes results: negates the first output."""
    name = "test-only-wrong"

    def run(self, gm, ctx):
        out = next(n for n in gm.graph.nodes if n.op == "output")
        first = out.args[0][0]
        with gm.graph.inserting_before(out):
            neg = gm.graph.call_function(torch.ops.aten.neg.default, (first,))
        out.args = ((neg, *out.args[0][1:]),)
        return 1


def test_on_error_fallback_runs_the_captured_graph(caplog):
    model, x = _convbn()
    (report,) = _compile_and_run(model, x, passes="test-only-breaks", on_error="fallback")
    assert "deliberately broken pass" in report.fallback
    assert "running it as captured" in caplog.text


def test_on_error_raise():
    model, x = _convbn()
    with pytest.raises(Exception, match="deliberately broken pass"):
        _compile_and_run(model, x, passes="test-only-breaks")


def test_verify_catches_a_pass_that_changes_results():
    model, x = _convbn()
    with pytest.raises(Exception, match="pass test-only-wrong changed the outputs: relative error 2"):
        _compile_and_run(model, x, passes="test-only-wrong", verify=True)


def test_reports_are_listed():
    model, x = _convbn()
    _compile_and_run(model, x)
    assert fastc.reports()[-1].kind == "inference"
    assert "fold-batchnorm" in fastc.reports()[-1].text()
