"""`fastc costmodel collect | train | eval | show` (fastc.costmodel_scripts) and the choices object
it collects with (fastc.costmodel.collecting): end to end on two tiny models through the command
line, in-process and on a Dask LocalCluster on loopback, resumable, and a clear one-line error
for each kind of bad input."""
from __future__ import annotations

import dataclasses
import json
import textwrap
import time

import pyarrow.parquet as pq
import pytest
import torch

from fastc.cli import main
from fastc.costmodel import ATEN, KernelFeatures
from fastc.costmodel.collecting import CollectingChoices
from fastc.costmodel_scripts.dataset import COLUMNS
from fastc.ir.schedule import Schedule

MODELS = textwrap.dedent('''
    import torch
    import torch.nn as nn


    def _tiny():
        torch.manual_seed(0)
        mlp = nn.Sequential(nn.Linear(16, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 8)).eval()
        conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Softmax(-1)).eval()
        return [("mlp", mlp, (torch.randn(4, 16),)), ("conv", conv, (torch.randn(2, 3, 8, 8),))]


    class Broken(nn.Module):
        def forward(self, x):
            raise RuntimeError("this model is broken")


    def models():
        return _tiny()


    def with_broken():
        return _tiny() + [("broken", Broken(), (torch.randn(2),))]


    def first():
        return _tiny()[:1]


    def not_iterable():
        return 42


    def pairs():
        return [("mlp", nn.Linear(2, 2))]


    def not_a_module():
        return [("mlp", "Linear", (torch.randn(2),))]


    def bare_tensor():
        return [("mlp", nn.Linear(2, 2), torch.randn(2))]


    def slash_name():
        return [("a/b", nn.Linear(2, 2), (torch.randn(2),))]


    def fails():
        raise KeyError("weights")
''')

EVAL_KEYS = {"kendall_tau", "top1", "top5", "p90_regret", "mape", "abstain", "kernels", "candidates",
             "tuning_s_exhaustive", "tuning_s_model", "tuning_speedup", "predict_ms_per_kernel"}


def _fastc(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["costmodel", *map(str, args)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def models_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_models.py"
    path.write_text(MODELS)
    return path


@pytest.fixture(scope="module")
def collected(models_file, tmp_path_factory):
    """A dataset of the two tiny models, collected with a broken third one that is reported and
    skipped; (folder, stderr of the collection)."""
    out = tmp_path_factory.mktemp("dataset")
    capsys = _Capture()
    with capsys:
        status = main(["costmodel", "collect", "--models", f"{models_file}:with_broken", "--target", "cpu",
                       "--out", str(out), "--repeats", "2"])
    assert status == 1, capsys.err  # a model failed: collection went on, and says so at the end
    return out, capsys.err


class _Capture:
    """capsys for a module-scoped fixture: stdout and stderr of the block."""

    def __enter__(self):
        import contextlib
        import io
        self._out, self._err = io.StringIO(), io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(self._out))
        self._stack.enter_context(contextlib.redirect_stderr(self._err))
        return self

    def __exit__(self, *exc):
        self._stack.close()
        self.out, self.err = self._out.getvalue(), self._err.getvalue()


# -- collect -----------------------------------------------------------------------------------------
def test_collect_writes_a_parquet_file_per_model_and_a_card(collected):
    out, err = collected
    assert sorted(p.name for p in out.glob("*.parquet")) == ["conv.parquet", "mlp.parquet"]
    assert "broken" in err and "this model is broken" in err  # named, with the reason
    for name in ("mlp", "conv"):
        table = pq.read_table(out / f"{name}.parquet")
        assert list(table.column_names[:len(COLUMNS)]) == list(COLUMNS)
        features = [c for c in table.column_names if c.startswith("f.")]
        assert features, "no feature columns: KernelFeatures.describe gave nothing"
        rows = table.to_pylist()
        assert {r["model"] for r in rows} == {name}
        assert all(r["group"].startswith(f"{name}/") for r in rows)
        timed = [r for r in rows if r["ms"] is not None]
        assert timed and all(r["runs"] == 2 and r["ms_min"] <= r["ms"] and r["measure_s"] > 0 for r in timed)
        assert any(r["is_aten"] for r in timed)  # ATen is one of the candidates
        groups = {r["group"] for r in rows}
        for group in groups:  # every kernel: several candidates, one of them timed at least
            assert sum(r["group"] == group for r in rows) > 1
        machine = json.loads(rows[0]["machine"])
        assert isinstance(machine, dict) and rows[0]["machine_id"]
        assert set(json.loads(rows[0]["versions"])) == {"torch", "torch_mlir", "xgboost", "fastc"}
    card = json.loads((out / "card.json").read_text())
    assert set(card["models"]) == {"mlp", "conv"} and "broken" in card["failed"]
    assert card["rows"] == sum(pq.read_metadata(p).num_rows for p in out.glob("*.parquet"))
    assert card["models"]["mlp"]["repeats"] == 2 and card["repeats"] == [2]


def test_collect_resumes_skipping_collected_models(collected, models_file, capsys):
    out, _ = collected
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    status, _, err = _fastc(capsys, "collect", "--models", f"{models_file}:models", "--out", out, "--repeats", 2)
    assert status == 0, err
    assert "skipping mlp: already collected" in err and "skipping conv: already collected" in err
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == before


def test_collect_redoes_a_model_whose_file_is_damaged(models_file, tmp_path, capsys):
    (tmp_path / "mlp.parquet").write_bytes(b"PAR1 half a file")
    status, _, err = _fastc(capsys, "collect", "--models", f"{models_file}:first", "--out", tmp_path, "--repeats", 1)
    assert status == 0, err
    assert "skipping" not in err
    assert pq.read_table(tmp_path / "mlp.parquet").num_rows > 0


@pytest.mark.parametrize("spec, message", [
    ("{dir}/missing.py:models", "no such file {dir}/missing.py"),
    ("{file}:nothing", "defines no 'nothing' (functions it defines: "),
    ("{file}", "expected FILE.py:FUNCTION or a bundled set (bundled, tiny)"),
    ("{file}:not_iterable", "not_iterable() returned an int, expected an iterable of (name, torch.nn.Module"),
    ("{file}:pairs", "item 0 of pairs() is a tuple of 2, expected (name, torch.nn.Module, example_inputs_tuple)"),
    ("{file}:not_a_module", "(mlp): the model is a str, expected a torch.nn.Module"),
    ("{file}:bare_tensor", "(mlp): the example inputs are a Tensor, expected a tuple (write (x,) for one input)"),
    ("{file}:slash_name", "the name 'a/b' is not usable as a file name"),
    ("{file}:fails", "fails() failed: KeyError: 'weights'"),
])
def test_collect_bad_models_argument(spec, message, models_file, tmp_path, capsys):
    spec = spec.format(dir=tmp_path, file=models_file)
    status, _, err = _fastc(capsys, "collect", "--models", spec, "--out", tmp_path / "out")
    assert status == 1
    line, = err.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"fastc costmodel collect: error: --models {spec}: ")
    assert message.format(dir=tmp_path) in line
    assert not (tmp_path / "out").exists()  # nothing collected


def test_collect_refuses_a_model_name_given_twice(models_file, tmp_path, capsys):
    status, _, err = _fastc(capsys, "collect", "--models", f"{models_file}:models", "--models",
                            f"{models_file}:first", "--out", tmp_path)
    assert status == 1
    assert f"model name 'mlp' was already given by --models {models_file}:models" in err


# -- train / eval / show -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trained(collected, tmp_path_factory):
    out, _ = collected
    model = tmp_path_factory.mktemp("model") / "cpu.json"
    with _Capture() as capture:
        status = main(["costmodel", "train", str(out), "--out", str(model)])
    assert status == 0, capture.err
    assert "trained on" in capture.out and model.exists()
    return model


def test_eval_prints_a_table_and_json_last(collected, trained, tmp_path, capsys):
    out, _ = collected
    status, stdout, err = _fastc(capsys, "eval", out, "--model", trained, "--json", "--plots", tmp_path / "plots")
    assert status == 0, err
    metrics = json.loads(stdout.strip().splitlines()[-1])
    assert EVAL_KEYS <= set(metrics)
    assert metrics["kernels"] > 0 and metrics["candidates"] >= metrics["kernels"]
    assert 0 <= metrics["top1"] <= 1
    assert list((tmp_path / "plots").glob("*.png"))


def test_eval_without_a_model_trains_one_per_held_out_model(collected, capsys, monkeypatch, tmp_path):
    import fastc.costmodel.default
    monkeypatch.setattr(fastc.costmodel.default, "default_model_path", lambda target: tmp_path / "none.json")
    out, _ = collected
    status, stdout, err = _fastc(capsys, "eval", out, "--json")
    assert status == 0, err
    assert "one trained without each held-out model" in stdout
    assert EVAL_KEYS <= set(json.loads(stdout.strip().splitlines()[-1]))


def test_eval_train_holds_out_even_where_a_model_is_shipped(collected, trained, capsys):
    out, _ = collected
    status, stdout, err = _fastc(capsys, "eval", out, "--train", "--json")
    assert status == 0, err
    assert "one trained without each held-out model (--train)" in stdout and "held out by model" in stdout
    assert EVAL_KEYS <= set(json.loads(stdout.strip().splitlines()[-1]))
    status, _, err = _fastc(capsys, "eval", out, "--train", "--model", trained)
    assert status != 0 and "--model or --train, not both" in err


def test_show_model_and_dataset(collected, trained, capsys):
    out, _ = collected
    status, stdout, err = _fastc(capsys, "show", trained)
    assert status == 0, err
    assert "target            cpu" in stdout and "trained on" in stdout and "conv, mlp" in stdout
    assert "top features by gain" in stdout
    status, stdout, err = _fastc(capsys, "show", out)
    assert status == 0, err
    assert "models            2: conv, mlp" in stdout and "machines          1" in stdout


@pytest.mark.parametrize("command", ["show", "eval"])
def test_corrupted_model_file_is_one_line_naming_it(command, collected, trained, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(trained.read_text()[:-200])
    args = ["show", bad] if command == "show" else ["eval", collected[0], "--model", bad]
    status, _, err = _fastc(capsys, *args)
    assert status == 1
    line, = err.strip().splitlines()
    assert line.startswith(f"fastc costmodel {command}: error: {bad}: not a JSON cost model")


def test_missing_dataset_and_model_are_errors_naming_them(tmp_path, capsys):
    status, _, err = _fastc(capsys, "train", tmp_path / "nowhere", "--out", tmp_path / "m.json")
    assert (status, err.strip()) == (1, f"fastc costmodel train: error: no such dataset: {tmp_path / 'nowhere'}")
    status, _, err = _fastc(capsys, "show", tmp_path / "missing.json")
    assert status == 1 and f"{tmp_path / 'missing.json'}: cannot read the cost model" in err
    status, _, err = _fastc(capsys, "eval", tmp_path)
    assert status == 1 and f"no .parquet files in {tmp_path}" in err


# -- on a Dask cluster ----------------------------------------------------------------------------------
def test_collect_and_train_on_a_dask_cluster(models_file, tmp_path, capsys):
    from distributed import LocalCluster

    # Threads, not processes (a worker process would import torch and fastc again: ~10 s), over
    # TCP on loopback as a real cluster's client and workers talk.
    with LocalCluster(n_workers=1, processes=False, threads_per_worker=1, host="127.0.0.1", protocol="tcp",
                      dashboard_address=None) as cluster:
        status, _, err = _fastc(capsys, "collect", "--models", f"{models_file}:models", "--out", tmp_path / "data",
                                "--repeats", 1, "--scheduler", cluster.scheduler_address)
        assert status == 0, err
        rows = [r for path in (tmp_path / "data").glob("*.parquet") for r in pq.read_table(path).to_pylist()]
        assert {r["model"] for r in rows} == {"mlp", "conv"}
        assert all(r["machine_id"] for r in rows)  # tagged by the worker
        status, stdout, err = _fastc(capsys, "train", tmp_path / "data", "--out", tmp_path / "m.json",
                                     "--scheduler", cluster.scheduler_address)
        assert status == 0, err
    assert (tmp_path / "m.json").exists()


# -- the choices object ------------------------------------------------------------------------------
SERIAL, PARALLEL, BAD = Schedule(XBLOCK=0), Schedule(XBLOCK=0, parallel=True), Schedule(XBLOCK=0, tile_outer=4)
NOT_APPLICABLE = Schedule(XBLOCK=0, vectorize=True, tile_outer=1, tile_inner=8)
WRONG = Schedule(XBLOCK=0, tile_outer=16)


def _kernel(name="k0_pointwise", describe=None, xnumel=64):
    return KernelFeatures(name=name, kind="pointwise", target="cpu", sizes={"xnumel": xnumel},
                          op_counts={"aten.add.Tensor": 1}, describe=describe)


def test_collecting_choices_times_every_candidate_and_keeps_the_fastest():
    seconds = {ATEN: 0.003, SERIAL: 0.0005, PARALLEL: 0.002, WRONG: 0.0001}
    ran = []

    def run(candidate):
        ran.append(candidate)
        if candidate == BAD:
            raise RuntimeError("does not build")
        time.sleep(seconds[candidate])
        return torch.full((4,), 2.0 if candidate == WRONG else 1.0)

    def describe(candidate):
        if candidate == NOT_APPLICABLE:
            raise ValueError("cannot vectorize this kernel")
        return {"parallel": float(getattr(candidate, "parallel", 0)), "aten": float(candidate == ATEN)}

    rows = []
    choices = CollectingChoices(rows=rows, repeats=3)
    candidates = [SERIAL, ATEN, PARALLEL, BAD, NOT_APPLICABLE, WRONG]
    k = _kernel(describe=describe)
    assert choices.choose(k, candidates) is None  # at compile time: wait for the first call
    assert choices.choose(k, candidates, run) == SERIAL  # the fastest of those computing ATen's values
    assert ran[0] == ATEN  # the reference runs first
    assert NOT_APPLICABLE not in ran  # not described: not run
    assert ran.count(SERIAL) == 1 + 3 and ran.count(BAD) == 1 and ran.count(WRONG) == 1
    assert len(rows) == 6  # in the candidates' order
    serial, aten = rows[:2]
    assert [json.loads(r["candidate"]) for r in rows[:2]] == [dataclasses.asdict(SERIAL), "aten"]
    assert aten["is_aten"] and aten["runs"] == 3 and aten["ms"] >= 2.5 and aten["f.aten"] == 1.0
    assert serial["ms"] < aten["ms"] and serial["ms_min"] <= serial["ms"] and serial["noise"] >= 0
    assert serial["measure_s"] >= 4 * 0.0005 and serial["build_s"] >= 0 and serial["features_s"] > 0
    assert rows[3]["ms"] is None and rows[3]["error"] == "RuntimeError: does not build"
    assert rows[4]["ms"] is None and rows[4]["error"].startswith("not applicable: ValueError: cannot vectorize")
    assert rows[5]["ms"] is None
    assert rows[5]["error"].startswith("wrong values: output 0 differs from ATen's by up to 1")
    assert {r["group"] for r in rows} == {rows[0]["group"]} and rows[0]["group"].startswith("k0_pointwise/")
    assert json.loads(rows[0]["problem"])["sizes"] == {"xnumel": 64}

    # A kernel of the same kind, ops and problem (a repeated layer) is not measured again.
    ran.clear()
    assert choices.choose(_kernel("k7_pointwise", describe), candidates, run) == SERIAL
    assert ran == [] and len(rows) == 6 and choices.repeated == 1
    # One of another problem is.
    assert choices.choose(_kernel("k8_pointwise", describe, xnumel=128), candidates, run) == SERIAL
    assert len(rows) == 12


def test_a_kernel_timed_while_another_process_keeps_a_core_busy_is_timed_again_and_reported(monkeypatch):
    import subprocess
    import sys

    from fastc.costmodel import collecting
    monkeypatch.setattr(collecting, "BUSY_WAIT_S", 0.0)
    ran = []

    def run(candidate):
        ran.append(candidate)
        time.sleep(0.04)
        return torch.ones(4)

    rows = []
    choices = CollectingChoices(rows=rows, repeats=3)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # the interpreter is up and spinning
        choices.choose(_kernel(), [SERIAL, ATEN], run)
    finally:
        spinner.kill()
        spinner.wait()
    assert ran.count(SERIAL) == 1 + 3 * collecting.BUSY_ATTEMPTS  # warm-up, then every attempt's rounds
    assert [k for k, _ in choices.contended] == ["k0_pointwise"] and choices.contended[0][1] > 0.5
    assert all(r["others_busy"] > 0.5 and r["runs"] == 3 for r in rows)


def test_collecting_choices_without_features_and_when_aten_fails():
    rows = []
    choices = CollectingChoices(rows=rows, repeats=1)
    assert choices.choose(_kernel(), [ATEN, SERIAL], lambda c: None) in (ATEN, SERIAL)
    assert len(rows) == 2 and not any(k.startswith("f.") for k in rows[0]) and rows[0]["features_s"] == 0

    def aten_fails(candidate):
        if candidate == ATEN:
            raise RuntimeError("ATen failed")
    with pytest.raises(RuntimeError, match="ATen failed"):  # the model's own error
        choices.choose(_kernel("k1", xnumel=3), [ATEN, SERIAL], aten_fails)
    assert choices.failures == [("k1", "RuntimeError: ATen failed")]
