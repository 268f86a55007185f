"""`fastc accuracy` runs through register() on a throwaway parser."""
import argparse
import json

import pytest

from fastc.reference import cli, transforms, weights_io


def parse(argv):
    parser = argparse.ArgumentParser(prog="fastc")
    sub = parser.add_subparsers(dest="command")
    cli.register(sub)
    return parser.parse_args(argv)


def test_list(capsys):
    args = parse(["accuracy", "--list"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    for name in ("char-lm", "digits-cnn", "digits-vit", "prune-<pct>", "bpc"):
        assert name in out


def test_measure_json(capsys):
    args = parse(["accuracy", "--model", "digits-vit", "--transform", "prune-30", "--json"])
    assert args.func(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == "digits-vit" and report["transform"] == "prune-30"
    assert report["seeds"] == [0] and "accuracy" in report["change"]


def test_measure_text_with_seeds(capsys):
    args = parse(["accuracy", "--model", "digits-cnn", "--transform", "noise-5", "--seeds", "0", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "noise-5" in out and "seeds [0, 1]" in out and "accuracy*" in out


def test_bad_transform_and_missing_model_exit_2(capsys):
    args = parse(["accuracy", "--model", "digits-cnn", "--transform", "shrink-9"])
    assert args.func(args) == 2
    assert "unknown transform 'shrink-9'" in capsys.readouterr().err
    args = parse(["accuracy"])
    assert args.func(args) == 2


def test_train_writes_weights_and_sidecar(tmp_path):
    args = parse(["accuracy", "--train", "digits-vit", "--steps", "3", "--out", str(tmp_path)])
    assert args.func(args) == 0
    assert weights_io.weights_path("digits-vit", tmp_path).exists()
    record = weights_io.load_record("digits-vit", tmp_path)
    assert record["settings"]["steps"] == 3 and "accuracy" in record["metrics"]


def test_transform_parameter_out_of_range_exits_2_before_measuring(capsys, monkeypatch):
    from fastc.reference import harness

    monkeypatch.setattr(harness, "measure", lambda *a, **k: pytest.fail("measured a transform that cannot run"))
    for spec in ("prune-200", "prune-20,prune-101"):
        args = parse(["accuracy", "--model", "digits-cnn", "--transform", spec])
        assert args.func(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert f"fastc accuracy: error: transform '{spec}'" in err and "[0, 1]" in err


def test_trying_a_transform_leaves_the_global_rng_alone():
    import torch
    torch.manual_seed(123)
    state = torch.get_rng_state()
    cli._try_transform(transforms.get("noise-5,recalibrate-bn"))
    assert torch.equal(torch.get_rng_state(), state)


def test_train_out_must_be_a_folder(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    args = parse(["accuracy", "--train", "digits-vit", "--steps", "1", "--out", str(tmp_path / "file")])
    assert args.func(args) == 2
    assert "is a file, not a folder" in capsys.readouterr().err
