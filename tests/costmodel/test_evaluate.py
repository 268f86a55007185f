"""Evaluating the learned cost model (fastc.costmodel.evaluate): Kendall's tau and the summary
metrics on hand-computed cases; leave-one-network-out on three synthetic networks never trains
on the network it asks about, and gives metrics in range with the tuning time saved; the text
table and the plots come out."""
import numpy as np
import pytest

import fastc.costmodel.evaluate as evaluation
from fastc.costmodel.evaluate import _folds, _summary, evaluate, kendall_tau, plots, table
from fastc.costmodel.learned import train
from test_learned import SMALL, synthetic_rows

NETWORKS = ("alpha", "beta", "gamma")


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return synthetic_rows(models=NETWORKS, groups=20, candidates=6)


@pytest.fixture(scope="module")
def result(rows) -> dict:
    return evaluate(rows, params=SMALL)


def test_kendall_tau_known_values():
    assert kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == -1.0
    # Ties in a: pairs (1,2) (1,3) (1,4) (2,4) (3,4) concordant, (2,3) tied in a only:
    # tau-b = 5 / sqrt(5 * 6) (scipy.stats.kendalltau gives 0.912870929...).
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / np.sqrt(30))
    assert kendall_tau([1, 3, 2, 4], [1, 2, 3, 4]) == pytest.approx(4 / 6)
    assert np.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert np.isnan(kendall_tau([1], [1]))


def test_summary_of_two_hand_made_groups():
    def group(best, chosen, top5, measured, regret, unsure, tau):
        return {"model": "m", "candidates": 4, "best_ms": best, "chosen_ms": chosen, "top5_ms": top5,
                "measured_ms": measured, "regret": regret, "unsure": unsure, "tau": tau, "ape": 0.1,
                "order_ms": 0.5, "exhaustive_s": 10.0, "model_s": 2.0}
    s = _summary([group(1.0, 2.0, 1.0, 1.0, 2.0, True, 0.5), group(2.0, 2.0, 2.0, 2.0, 1.0, False, None)])
    assert s["top1"] == 3 / 4 and s["top5"] == 1.0 and s["top1_with_measuring"] == 1.0
    assert s["p90_regret"] == pytest.approx(1.9)  # between 1.0 and 2.0, 90% of the way
    assert s["kendall_tau"] == 0.5 and s["abstain"] == 0.5 and s["mape"] == pytest.approx(0.1)
    assert (s["kernels"], s["candidates"], s["tuning_s_exhaustive"], s["tuning_s_model"]) == (2, 8, 20.0, 4.0)
    assert s["tuning_speedup"] == 5.0 and s["predict_ms_per_kernel"] == 0.5


def test_folds_of_networks():
    assert _folds(np.array(["b", "a", "b", "c"], dtype=object)) == [["a"], ["b"], ["c"]]
    assert _folds(np.array(list("hgfedcba"), dtype=object)) == [["a", "g"], ["b", "h"], ["c"], ["d"], ["e"], ["f"]]
    with pytest.raises(ValueError, match="two distinct"):
        _folds(np.array(["a", "a"], dtype=object))


def test_no_network_is_trained_on_while_it_is_asked_about(rows, monkeypatch):
    trained_on = []

    def recording_train(data, **kwargs):
        trained_on.append(set(data.model))
        return train(data, **kwargs)
    monkeypatch.setattr(evaluation, "train", recording_train)
    r = evaluate(rows, params=SMALL)
    assert r["folds"] == [["alpha"], ["beta"], ["gamma"]]
    assert trained_on == [{"beta", "gamma"}, {"alpha", "gamma"}, {"alpha", "beta"}]


def test_metrics_in_range_per_network_and_tuning_time(result, rows):
    assert set(result["per_model"]) == set(NETWORKS)
    assert result["kernels"] == 60 and result["candidates"] == 360   # groups of >= 2 timed candidates
    assert sum(s["kernels"] for s in result["per_model"].values()) == 60
    for s in [result, *result["per_model"].values()]:
        assert 0.5 < s["kendall_tau"] <= 1          # times are a learnable function of the features
        assert 0.9 < s["top1"] <= s["top1_with_measuring"] <= 1 and s["top1"] <= s["top5"] <= 1
        assert s["p90_regret"] >= 1 and 0 <= s["abstain"] <= 1 and 0 <= s["mape"] < 0.5
    timed = [r for r in rows if r["ms"] is not None]
    assert result["tuning_s_exhaustive"] == pytest.approx(sum(r["build_s"] + r["measure_s"] for r in timed))
    assert 0 < result["tuning_s_model"] < result["tuning_s_exhaustive"]
    assert result["tuning_speedup"] == pytest.approx(result["tuning_s_exhaustive"] / result["tuning_s_model"])
    assert 0 < result["predict_ms_per_kernel"] < 50
    group = result["groups"][0]
    assert group["regret"] == group["chosen_ms"] / group["best_ms"] >= 1
    assert len(result["points"]) == 360 and all(p[0] > 0 and p[1] > 0 for p in result["points"])


def test_a_given_model_is_evaluated_on_all_rows_without_training(rows, monkeypatch):
    model = train(synthetic_rows(models=("delta",), groups=20, candidates=6, seed=7), params=SMALL)

    def no_training(*args, **kwargs):
        raise AssertionError("evaluate trained with a model given")
    monkeypatch.setattr(evaluation, "train", no_training)
    r = evaluate(rows, model=model)
    assert r["holdout"] is None and r["folds"] == [] and r["kernels"] == 60
    assert r["kendall_tau"] > 0.5


def test_evaluate_refuses_an_unknown_holdout(rows):
    with pytest.raises(ValueError, match="unknown holdout 'network' \\(valid: model, kernel\\)"):
        evaluate(rows, holdout="network")


def test_table_has_a_line_per_network_and_all(result):
    text = table(result)
    lines = text.splitlines()
    assert "held out by model" in lines[0] and "box-1" in lines[0]
    assert lines[1].split()[:3] == ["network", "kernels", "cands"]
    assert [line.split()[0] for line in lines[2:]] == [*NETWORKS, "all"]
    assert lines[-1].split()[1:3] == ["60", "360"]
    print(text)


def test_plots_write_png_files(result, rows, tmp_path):
    paths = plots(result, rows, tmp_path / "plots")
    assert [p.rsplit("/", 1)[1] for p in paths] == ["predicted_vs_measured.png", "regret_per_kernel.png"]
    for path in paths:
        with open(path, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert plots(result, None, tmp_path / "uncolored")[0].endswith("predicted_vs_measured.png")
