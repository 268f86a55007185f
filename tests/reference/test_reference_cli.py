"""`fastc accuracy` runs through register() on a throwaway parser."""
import argparse
import json

import pytest

from fastc_eval import cli, weights_io


def parse(argv):
    parser = argparse.ArgumentParser(prog="fastc")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    return parser.parse_args(argv)


def test_list(capsys):
    args = parse(["accuracy", "--list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name in ("char-lm", "digits-cnn", "digits-vit", "bpc", "prune-magnitude{fraction=0.5}",
                 "recalibrate-batchnorm", "prune-<pct>"):
        assert name in out
    assert "fold-batchnorm" not in out  # exact passes are not listed as lossy


def test_measure_passes_json(capsys):
    args = parse(["accuracy", "--model", "digits-vit", "--passes", "prune-magnitude{fraction=0.3}", "--json"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "digits-vit" and report["passes"] == "prune-magnitude{fraction=0.3}"
    assert report["seeds"] == [0] and "accuracy" in report["change"]
    assert report["pass_costs"][0]["rewrites"] > 0


@pytest.mark.parametrize("names, spec", [
    ("identity", ""),
    ("prune-20", "prune-magnitude{fraction=0.2}"),
    ("noise-5", "add-weight-noise{relative_std=0.05}"),
    ("prune-50,recalibrate-bn", "prune-magnitude{fraction=0.5},recalibrate-batchnorm"),
    ("round-fp16,zero-weights", "round-weights,zero-weights"),
])
def test_transform_names_stand_for_pipelines(names, spec):
    assert cli.transform_spec(names) == spec


def test_measure_transform_with_seeds(capsys):
    args = parse(["accuracy", "--model", "digits-cnn", "--transform", "noise-5", "--seeds", "0", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "add-weight-noise" in out and "seeds [0, 1]" in out and "accuracy*" in out
    assert "--transform noise-5 is --passes 'add-weight-noise{relative_std=0.05}'" in out


def test_bad_transform_bad_passes_and_missing_model_exit_2(capsys):
    args = parse(["accuracy", "--model", "digits-cnn", "--transform", "shrink-9"])
    assert args.func(args) == 2
    assert "unknown transform 'shrink-9'" in capsys.readouterr().err
    args = parse(["accuracy", "--model", "digits-cnn", "--passes", "shrink{by=9}"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fastc accuracy: error: --passes 'shrink{by=9}': unknown pass 'shrink'" in err
    args = parse(["accuracy"])
    assert args.func(args) == 2


def test_passes_and_transform_exclude_each_other(capsys):
    with pytest.raises(SystemExit):
        parse(["accuracy", "--model", "digits-cnn", "--passes", "zero-weights", "--transform", "identity"])
    assert "not allowed with argument" in capsys.readouterr().err


def test_train_writes_weights_and_sidecar(tmp_path):
    args = parse(["accuracy", "--train", "digits-vit", "--steps", "3", "--out", str(tmp_path)])
    assert args.func(args) == 0
    assert weights_io.weights_path("digits-vit", tmp_path).exists()
    record = weights_io.load_record("digits-vit", tmp_path)
    assert record["settings"]["steps"] == 3 and "accuracy" in record["metrics"]


def test_pass_option_out_of_range_exits_2_before_measuring(capsys, monkeypatch):
    from fastc_eval import accuracy

    monkeypatch.setattr(accuracy, "measure", lambda *a, **k: pytest.fail("measured a pipeline that cannot run"))
    for spec in ("prune-200", "prune-20,prune-101"):
        args = parse(["accuracy", "--model", "digits-cnn", "--transform", spec])
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"fastc accuracy: error: transform '{spec}'" in err and "[0, 1]" in err
    args = parse(["accuracy", "--model", "digits-cnn", "--passes", "add-weight-noise{relative_std=-1}"])
    assert args.func(args) == 2
    assert ">= 0" in capsys.readouterr().err


def test_noise_pass_leaves_the_global_rng_alone():
    import torch

    from fastc.passes import parse_pipeline
    from fastc_eval.frozen_graph import capture

    gm = capture(torch.nn.Linear(4, 4), (torch.ones(2, 4),))
    torch.manual_seed(123)
    state = torch.get_rng_state()
    [noise] = parse_pipeline("add-weight-noise{seed=3}")
    assert noise.run(gm, None) == 1
    assert torch.equal(torch.get_rng_state(), state)


def test_train_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    args = parse(["accuracy", "--train", "digits-vit", "--steps", "1", "--out", str(tmp_path / "file")])
    assert args.func(args) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
