"""The learned cost model (fastc.costmodel.learned) on synthetic measurements whose times are a
known function of the features: it ranks a group it never saw in the right order, predicts
times, survives a save and load unchanged, refuses another machine or feature version, and turns
every damaged or hostile model file into a CostModelError naming the file."""
import json
import math

import numpy as np
import pyarrow as pa
import pytest

from fastc.costmodel.learned import (CostModel, CostModelError, ModelMismatch, load, measurements, train)

# Tiny models: the tests train in well under a second.
SMALL = {"rounds": 40, "max_depth": 3, "eta": 0.3, "subsample": 1.0, "colsample_bytree": 1.0, "nthread": 1}


def true_ms(n: float, x: float, y: float) -> float:
    """The synthetic machine: a candidate's time grows with the problem size n and with its
    features x and y (y costs three times as much as x)."""
    return n * (x + 3 * y + 0.1)


def synthetic_rows(models=("alpha",), groups=30, candidates=8, seed=0, noise=0.02, machine_id="box-1",
                   feature_version=1) -> list[dict]:
    """Dataset rows (the collect contract's columns) of `groups` kernel problems per model, each
    with `candidates` candidates at random (x, y), timed as true_ms with relative `noise`; every
    other row lacks f.unused (NaN), and one candidate of each model failed to build (ms None)."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in models:
        for g in range(groups):
            n = float(10 ** rng.uniform(0, 2))
            for c in range(candidates):
                x, y = (float(v) for v in rng.uniform(0, 1, 2))
                ms = true_ms(n, x, y) * math.exp(rng.normal(0, noise))
                rows.append({
                    "model": model, "kernel": f"{model}.k{g % 5}", "group": f"{model}/{g}", "kind": "pointwise",
                    "candidate": json.dumps({"x": x, "y": y}), "is_aten": False, "ms": ms, "ms_min": ms * 0.98,
                    "noise": noise, "runs": 5, "build_s": 0.2, "measure_s": 5 * ms / 1e3, "features_s": 1e-4,
                    "machine_id": machine_id, "machine": json.dumps({"cpu": "synthetic", "cores": 2}),
                    "versions": "{}", "feature_version": feature_version, "target": "cpu",
                    "f.n": n, "f.x": x, "f.y": y, "f.unused": None if c % 2 else 1.0})
        rows.append({**rows[-1], "ms": None, "group": f"{model}/0"})
    return rows


@pytest.fixture(scope="module")
def model() -> CostModel:
    return train(synthetic_rows(), params=SMALL)


def fresh_group(seed=1, candidates=12):
    """Feature dicts (no f. prefix) of a problem never trained on, and their true times."""
    rng = np.random.default_rng(seed)
    n = 30.0
    xy = rng.uniform(0, 1, (candidates, 2))
    return [{"n": n, "x": float(x), "y": float(y)} for x, y in xy], np.array([true_ms(n, x, y) for x, y in xy])


def kendall(a, b) -> float:
    """Kendall's tau-a of two tie-free sequences."""
    a, b = np.asarray(a), np.asarray(b)
    i, j = np.triu_indices(len(a), 1)
    return float(np.mean(np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])))


def test_measurements_drop_failed_rows_and_keep_groups_together():
    rows = synthetic_rows(groups=4, candidates=3)
    rng = np.random.default_rng(3)
    shuffled = [rows[i] for i in rng.permutation(len(rows))]
    m = measurements(pa.Table.from_pylist(shuffled))
    assert len(m) == 12  # 4 x 3 timed; the failed row is gone
    assert m.features == ("n", "x", "y", "unused")
    assert [m.group[s].tolist() for s in m.group_slices()] == [[f"alpha/{g}"] * 3 for g in range(4)]
    assert np.isnan(m.x[:, 3]).sum() == sum(r["f.unused"] is None for r in rows if r["ms"] is not None)
    # The first group's rows, as feature dicts without NaN (float32 values), with their times.
    expected = sorted((r["f.x"], r["f.y"], r["f.unused"], r["ms"]) for r in rows
                      if r["group"] == "alpha/0" and r["ms"] is not None)
    got = sorted((d["x"], d["y"], d.get("unused"), ms) for d, ms in zip(m.rows(slice(0, 3)), m.ms[:3]))
    assert len(got) == len(expected) == 3
    for (x, y, unused, ms), (x_, y_, unused_, ms_) in zip(got, expected):
        assert (x, y, unused, ms) == (pytest.approx(x_, rel=1e-6), pytest.approx(y_, rel=1e-6), unused_, ms_)


def test_relevance_is_the_time_ratio_to_the_best_in_eighths():
    from fastc.costmodel.learned import _relevance
    rows = [{**r, "ms": ms} for r, ms in zip(synthetic_rows(groups=1, candidates=4), [1.0, 2.0, 1.03, 16.1])]
    m = measurements(rows)
    assert _relevance(m).tolist() == [8, 4, 8, 0]


def test_ranks_a_problem_it_never_saw_in_the_true_order(model):
    rows, ms = fresh_group()
    scores = model.scores(rows)
    assert kendall(scores, -ms) > 0.8
    ranking, _ = model.order(rows)
    assert sorted(ranking) == list(range(len(rows)))
    assert ms[ranking[0]] <= 1.05 * ms.min()          # top-1 within 5% of the fastest
    assert list(np.argsort(-scores, kind="stable")) == ranking


def test_predicts_times_of_a_problem_it_never_saw(model):
    rows, ms = fresh_group(seed=2)
    predicted = model.predict_ms(rows)
    assert np.median(np.abs(predicted - ms) / ms) < 0.25
    # The dataset's own names (with the f. prefix) and absent features read the same.
    prefixed = [{"f." + k: v for k, v in r.items()} | {"f.unused": None, "not_a_feature": 3.0} for r in rows]
    assert np.array_equal(model.predict_ms(prefixed), predicted)


def test_unsure_when_the_regressor_disagrees_with_the_ranker(model):
    fast, slow = {"n": 30.0, "x": 0.0, "y": 0.0}, {"n": 30.0, "x": 1.0, "y": 1.0}
    ranking, unsure = model.order([slow, fast, slow])
    assert ranking[0] == 1 and unsure is False                # both boosters say `fast`
    assert model.order([fast, dict(fast), slow])[1] is False  # a tie is no disagreement

    class Reversed:                                           # a regressor that says the opposite
        def __init__(self, booster):
            self.booster = booster

        def inplace_predict(self, x):
            return -self.booster.inplace_predict(x)

    model.regressor, kept = Reversed(model.regressor), model.regressor
    try:
        ranking, unsure = model.order([slow, fast, slow])
        assert ranking[0] == 1 and unsure is True             # measure the top few
    finally:
        model.regressor = kept
    assert model.order([fast]) == ([0], False)
    assert model.order([]) == ([], False)


def test_header_says_what_it_was_trained_on(model):
    h = model.header
    assert (h["format"], h["format_version"], h["target"]) == ("fastc-costmodel", 1, "cpu")
    assert (h["machine_id"], h["feature_version"], h["machine"]) == ("box-1", 1, {"cpu": "synthetic", "cores": 2})
    assert h["features"] == ["n", "x", "y", "unused"]
    assert h["trained_on"] == {"rows": 240, "groups": 30, "models": ["alpha"]}


def test_save_and_load_give_the_same_predictions(model, tmp_path):
    path = tmp_path / "model.json"
    model.save(path)
    with open(path) as f:
        doc = json.load(f)  # plain JSON
    assert set(doc) == {"header", "ranker", "regressor"} and doc["header"] == model.header
    again = load(path)
    assert CostModel.load(path).header == again.header == model.header
    assert again.path == str(path) and str(path) in repr(again)
    rows, _ = fresh_group(seed=4, candidates=30)
    assert np.array_equal(again.scores(rows), model.scores(rows))
    assert np.array_equal(again.predict_ms(rows), model.predict_ms(rows))
    assert again.order(rows) == model.order(rows)


def test_check_refuses_another_machine_or_feature_version(model, tmp_path):
    path = tmp_path / "model.json"
    model.save(path)
    loaded = load(path)
    loaded.check("cpu", "box-1", 1)
    with pytest.raises(ModelMismatch) as other_machine:
        loaded.check("cpu", "box-2", 1)
    message = str(other_machine.value)
    assert str(path) in message and "'box-1'" in message and "'box-2'" in message and "heuristic" in message
    with pytest.raises(ModelMismatch, match=r"feature version 1\).*feature version 2\)") as other_version:
        loaded.check("cpu", "box-1", 2)
    assert str(path) in str(other_version.value)
    with pytest.raises(CostModelError, match="target 'cuda'"):
        loaded.check("cuda", "box-1", 1)


def test_train_refuses_several_machines_and_parameters_it_does_not_own():
    rows = synthetic_rows(groups=2) + synthetic_rows(groups=1, machine_id="box-2")
    with pytest.raises(ValueError, match="box-1.*box-2|box-2.*box-1"):
        train(rows, params=SMALL)
    with pytest.raises(ValueError, match="objective"):
        train(synthetic_rows(groups=2), params={**SMALL, "objective": "reg:absoluteerror"})
    with pytest.raises(ValueError, match="no timed rows of target 'cuda'"):
        train(synthetic_rows(groups=2), target="cuda")


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory) -> dict:
    """A good model file's JSON."""
    path = tmp_path_factory.mktemp("good") / "model.json"
    model.save(path)
    with open(path) as f:
        return json.load(f)


def _tree(doc, which="ranker", i=0):
    return doc[which]["learner"]["gradient_booster"]["model"]["trees"][i]


def _set(fn):
    def edit(doc):
        fn(doc)
        return json.dumps(doc)
    return edit


# Each damages a good file's JSON (a dict) and returns the file's text. The tree cases are
# those that made XGBoost read out of bounds (segmentation fault) when it loaded them unchecked.
DAMAGE = {
    "truncated": lambda doc: json.dumps(doc)[:5000],
    "array": lambda doc: json.dumps([doc]),
    "empty": lambda doc: "",
    "not utf-8": lambda doc: "\udcff",
    "feature_version is text": _set(lambda d: d["header"].update(feature_version="1")),
    "feature_version is a bool": _set(lambda d: d["header"].update(feature_version=True)),
    "features not names": _set(lambda d: d["header"].update(features=[1, 2])),
    "no trained_on rows": _set(lambda d: d["header"]["trained_on"].pop("rows")),
    "other format": _set(lambda d: d["header"].update(format="onnx")),
    "missing header": _set(lambda d: d.pop("header")),
    "booster is garbage": _set(lambda d: d.update(ranker="garbage")),
    "booster of garbage": _set(lambda d: d.update(ranker={"learner": 5, "version": [3, 2, 0]})),
    "other objective": _set(lambda d: d["regressor"]["learner"]["objective"].update(name="reg:gamma")),
    "child out of range": _set(lambda d: _tree(d)["left_children"].__setitem__(0, 1000)),
    "negative child": _set(lambda d: _tree(d)["right_children"].__setitem__(0, -5)),
    "cycle": _set(lambda d: (_tree(d)["left_children"].__setitem__(1, 0), _tree(d)["right_children"].__setitem__(1, 0))),
    "feature out of range": _set(lambda d: _tree(d, "regressor")["split_indices"].__setitem__(0, 10 ** 6)),
    "tree_info out of range": _set(lambda d: d["ranker"]["learner"]["gradient_booster"]["model"].update(
        tree_info=[7] * 40)),
    "short array": _set(lambda d: _tree(d)["split_conditions"].pop()),
    "huge num_nodes": _set(lambda d: _tree(d)["tree_param"].update(num_nodes="100000000000")),
    "text in a tree": _set(lambda d: _tree(d)["base_weights"].__setitem__(0, "x")),
    "huge number": lambda doc: json.dumps(doc).replace('"id": 0', '"id": 1e999', 1),
    "huge integer": lambda doc: json.dumps(doc).replace('"id": 0', '"id": ' + "9" * 5000, 1),
    "deep nesting": _set(lambda d: d["ranker"]["learner"]["attributes"].update(deep=json.loads("[" * 500 + "]" * 500))),
    "deeper than json.load goes": lambda doc: '{"header": ' + "[" * 100000 + "]" * 100000 + "}",
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_file_is_a_cost_model_error_naming_it(saved, tmp_path, damage):
    path = tmp_path / f"{damage.replace(' ', '_')}.json"
    text = DAMAGE[damage](json.loads(json.dumps(saved)))
    path.write_bytes(b"\xff\xfe" if damage == "not utf-8" else text.encode())
    with pytest.raises(CostModelError) as error:
        load(path)
    assert str(path) in str(error.value)


def test_a_missing_file_is_a_cost_model_error_naming_it(tmp_path):
    with pytest.raises(CostModelError, match="nowhere.json"):
        load(tmp_path / "nowhere.json")


def test_trains_on_a_dask_cluster():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        model = train(synthetic_rows(), params=SMALL, dask_client=client)
    rows, ms = fresh_group()
    assert kendall(model.scores(rows), -ms) > 0.8
    assert model.header["trained_on"] == {"rows": 240, "groups": 30, "models": ["alpha"]}
