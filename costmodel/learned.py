"""The learned cost model: which of a kernel's candidates runs fastest, from their features.

A dataset (one row per kernel problem and candidate, see `measurements`) trains two XGBoost
models (`train`):

- a ranker (objective rank:pairwise, the candidates of one `group` ranked against each other):
  `scores` and `order`, the candidates best first;
- a regressor of log(ms): `predict_ms`, which compares different kernels, and tells `order`
  when it disagrees with the ranker's first (then the caller measures the first few).

Both read every feature as given and, for module features, relative to the least of it among
the kernel's candidates (`with_relative`): what a schedule changes, in proportion to the kernel.

A `CostModel` is saved as one plain JSON file (`save`, `load`): a header saying what it was trained
for (target, machine, feature version), then both boosters as XGBoost's own JSON. Loading never
unpickles and checks every field before XGBoost sees it (a malformed tree makes XGBoost read out
of bounds), so a damaged or hostile file is a `CostModelError` naming it, never a crash.
`check` refuses a model trained for another machine or feature version (`ModelMismatch`).
"""
from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, replace
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

FORMAT, FORMAT_VERSION = "fastc-costmodel", 1
FEATURE_PREFIX = "f."
#: A candidate as fast as its group's best has relevance LEVELS; one k times slower,
#: round(LEVELS / k) (see _relevance).
LEVELS = 8
#: Tree parameters of both models; `train(params=...)` overrides them ("rounds": boosting rounds).
#: Small on purpose: 200 trees of depth 6 score 30 candidates in well under a millisecond.
DEFAULT_PARAMS = {"rounds": 200, "max_depth": 6, "eta": 0.1, "min_child_weight": 1.0,
                  "subsample": 0.8, "colsample_bytree": 0.9, "tree_method": "hist", "seed": 0}
RANKER_OBJECTIVE, REGRESSOR_OBJECTIVE = "rank:pairwise", "reg:squarederror"
#: The columns of a dataset this module reads (besides the f.<name> features).
COLUMNS = ("model", "kernel", "group", "kind", "ms", "build_s", "measure_s", "features_s",
           "machine_id", "machine", "feature_version", "target")
# What a model file may hold, at most (a file past these is refused before XGBoost reads it).
MAX_FILE_BYTES = 64 << 20
MAX_TREES = 10_000
MAX_NODES = 1 << 16      # per tree
MAX_DEPTH_JSON = 12      # nesting of the booster JSON (XGBoost's own is 6 deep)


class CostModelError(Exception):
    """A cost model file that cannot be used (missing, malformed, refused by XGBoost)."""


class ModelMismatch(CostModelError):
    """A valid cost model trained for another target, machine or feature version."""


@dataclass(frozen=True)
class Measurements:
    """A dataset's valid rows as arrays, sorted by group (each group's rows contiguous, `qid`
    non-decreasing), of one target, machine and feature version."""
    features: tuple[str, ...]    # the f.<name> columns, without the prefix
    x: np.ndarray                # (rows, features) float32, NaN where a feature does not apply
    ms: np.ndarray               # median time of each candidate, > 0
    qid: np.ndarray              # int64 group number per row
    group: np.ndarray            # the columns of the same names (object arrays of str) ...
    model: np.ndarray
    kernel: np.ndarray
    kind: np.ndarray
    build_s: np.ndarray          # ... and float64, 0 where null
    measure_s: np.ndarray
    features_s: np.ndarray
    target: str
    machine_id: str
    machine: dict
    feature_version: int

    def __len__(self) -> int:
        return len(self.ms)

    def subset(self, mask: np.ndarray) -> "Measurements":
        """The rows where `mask` holds (still sorted by group)."""
        arrays = ("x", "ms", "qid", "group", "model", "kernel", "kind", "build_s", "measure_s", "features_s")
        return replace(self, **{name: getattr(self, name)[mask] for name in arrays})

    def group_slices(self) -> list[slice]:
        """The rows of each group, in order."""
        starts = np.flatnonzero(np.r_[True, self.qid[1:] != self.qid[:-1]])
        ends = np.r_[starts[1:], len(self.qid)]
        return [slice(int(a), int(b)) for a, b in zip(starts, ends)]

    def rows(self, where: slice) -> list[dict]:
        """Feature dicts {name: value} of the rows `where` (NaN values left out), what a
        compiler hands `CostModel.order`."""
        return [{n: float(v) for n, v in zip(self.features, x) if not math.isnan(v)} for x in self.x[where]]


def measurements(data, target: str = "cpu") -> Measurements:
    """The rows of `data` (a pyarrow Table, a list of row dicts, or Measurements) that measured
    `target` and have a time; ValueError if none do, or if they come from several machines or
    feature versions (a model is for one machine: filter the table first, e.g.
    `table.filter(pc.field("machine_id") == "...")`)."""
    if isinstance(data, Measurements):
        if data.target != target:
            raise ValueError(f"measurements of target {data.target!r}, asked for {target!r}")
        return data
    table = data if isinstance(data, pa.Table) else pa.Table.from_pylist(list(data))
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"dataset lacks the columns {missing} (has {table.column_names})")
    ms = _floats(table, "ms")
    keep = np.isfinite(ms) & (ms > 0) & (_strings(table, "target") == target)
    if not keep.any():
        raise ValueError(f"dataset has no timed rows of target {target!r} ({table.num_rows} rows)")
    table = table.filter(pa.array(keep))
    machine_id, feature_version = _one_value(table, "machine_id"), int(_one_value(table, "feature_version"))
    group = _strings(table, "group")
    _, qid = np.unique(group, return_inverse=True)
    order = np.argsort(qid, kind="stable")
    features = tuple(c for c in table.column_names if c.startswith(FEATURE_PREFIX))
    if not features:
        raise ValueError(f"dataset has no feature columns ({FEATURE_PREFIX}<name>)")
    x = np.empty((table.num_rows, len(features)), np.float32)
    for j, name in enumerate(features):
        x[:, j] = _floats(table, name)
    machine = _machine(table.column("machine")[0].as_py())
    return Measurements(
        features=tuple(f[len(FEATURE_PREFIX):] for f in features), x=np.ascontiguousarray(x[order]),
        ms=ms[keep][order], qid=qid[order].astype(np.int64), group=group[order],
        model=_strings(table, "model")[order], kernel=_strings(table, "kernel")[order],
        kind=_strings(table, "kind")[order],
        build_s=np.nan_to_num(_floats(table, "build_s")[order]),
        measure_s=np.nan_to_num(_floats(table, "measure_s")[order]),
        features_s=np.nan_to_num(_floats(table, "features_s")[order]),
        target=target, machine_id=str(machine_id), machine=machine, feature_version=feature_version)


def train(data, *, target: str = "cpu", params: dict | None = None, dask_client=None) -> "CostModel":
    """The ranker and the regressor trained on `data` (see `measurements`) for `target`.

    `params` overrides DEFAULT_PARAMS (XGBoost tree parameters, "rounds" the number of trees);
    both models get the same. With `dask_client` (a dask.distributed Client) both train on that
    cluster through xgboost.dask, each worker holding whole groups."""
    m = measurements(data, target)
    params = {**DEFAULT_PARAMS, **(params or {})}
    if "objective" in params:
        raise ValueError(f"params sets objective {params['objective']!r}: the ranker is "
                         f"{RANKER_OBJECTIVE} and the regressor {REGRESSOR_OBJECTIVE}; pass tree parameters only")
    rounds = int(params.pop("rounds"))
    fit = _fit_local if dask_client is None else _dask_fitter(dask_client)
    from .mlir_features import MODULE_FEATURES
    relative = [name for name in m.features if name in MODULE_FEATURES]
    columns = list(m.features) + [RELATIVE_PREFIX + name for name in relative]
    x = with_relative(m.x, m.qid, [m.features.index(name) for name in relative])
    ranker = fit({**params, "objective": RANKER_OBJECTIVE}, rounds, x, _relevance(m), m.qid)
    regressor = fit({**params, "objective": REGRESSOR_OBJECTIVE}, rounds, x, np.log(m.ms), None)
    header = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "target": target,
        "machine_id": m.machine_id, "machine": m.machine, "feature_version": m.feature_version,
        "features": columns,
        "trained_on": {"rows": len(m), "groups": len(m.group_slices()), "models": sorted(set(m.model))},
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return CostModel(ranker, regressor, header)


#: Booster columns named RELATIVE_PREFIX + a module feature: that feature of a candidate relative
#: to the least of it among the kernel's candidates, log2((x + 1) / (least + 1)). A kernel's
#: candidates differ in what a schedule changes (work recomputed by tile-and-fuse, temporaries,
#: loop trips), and in proportion to the kernel's size; relative to the kernel's own least the
#: ranker learns "4x the work" once, not once per kernel size.
RELATIVE_PREFIX = "rel."


def with_relative(x: np.ndarray, qid: np.ndarray, columns: list[int]) -> np.ndarray:
    """`x` (rows sorted by group `qid`) with a relative column appended for each of `columns`."""
    if not columns:
        return x
    base = x[:, columns].astype(np.float64)
    out = np.empty_like(base)
    starts = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]])
    for a, b in zip(starts, np.r_[starts[1:], len(qid)]):
        out[a:b] = _relative(base[a:b])
    return np.ascontiguousarray(np.hstack([x, out.astype(np.float32)]))


def _relative(block: np.ndarray) -> np.ndarray:
    """log2((x + 1) / (least + 1)) per column of one kernel's candidates (NaN stays NaN)."""
    with np.errstate(all="ignore"):
        least = np.nanmin(np.where(np.isnan(block), np.inf, block), axis=0)
        least = np.where(np.isfinite(least), least, np.nan)
        return np.log2((np.maximum(block, 0) + 1) / (np.maximum(least, 0) + 1))


def _relevance(m: Measurements) -> np.ndarray:
    """Integer relevance of each candidate in its group: round(LEVELS * best_ms / ms), so the
    group's best gets LEVELS, one twice as slow LEVELS/2, one 16x slower 0.

    Why the time ratio and not the rank: candidates within ~6% of the best (about the noise of
    a median on a shared machine) get the same label, so rank:pairwise spends no pairs ordering
    noise, while a candidate much slower is far down. On synthetic kernel/schedule data
    rank:pairwise with these labels ranked as well as rank labels or log-ratio labels, and better
    (Kendall tau 0.61 vs 0.58) than rank:ndcg, which trains the top of each list only: the
    regressor and `order`'s measuring cover the top, the ranker should order the whole list."""
    starts = np.flatnonzero(np.r_[True, m.qid[1:] != m.qid[:-1]])
    best = np.repeat(np.minimum.reduceat(m.ms, starts), np.diff(np.r_[starts, len(m.ms)]))
    return np.round(LEVELS * best / m.ms)


def _fit_local(params: dict, rounds: int, x: np.ndarray, y: np.ndarray, qid: np.ndarray | None):
    import xgboost
    return xgboost.train(params, xgboost.DMatrix(x, label=y, qid=qid), num_boost_round=rounds)


def _dask_fitter(client):
    """A fit function like _fit_local that trains on `client`'s cluster: the rows go out as dask
    arrays in one chunk per worker, cut at group boundaries (a group split over workers would
    not be ranked as one)."""
    import dask.array as da
    from xgboost import dask as dxgb

    workers = max(1, len(client.scheduler_info()["workers"]))

    def fit(params: dict, rounds: int, x: np.ndarray, y: np.ndarray, qid: np.ndarray | None):
        chunks = _chunks(qid if qid is not None else np.arange(len(y)), workers)
        dtrain = dxgb.DaskDMatrix(client, da.from_array(x, chunks=(chunks, x.shape[1])),
                                  da.from_array(y, chunks=(chunks,)),
                                  qid=None if qid is None else da.from_array(qid, chunks=(chunks,)))
        return dxgb.train(client, params, dtrain, num_boost_round=rounds)["booster"]
    return fit


def _chunks(qid: np.ndarray, parts: int) -> tuple[int, ...]:
    """Sizes of at most `parts` consecutive chunks of rows of about equal size, each holding
    whole groups (`qid` sorted)."""
    starts = np.flatnonzero(np.r_[True, qid[1:] != qid[:-1]])
    at = np.searchsorted(starts, len(qid) * np.arange(1, parts) / parts)  # first group from each cut on
    cuts = np.unique(starts[at[at < len(starts)]])
    return tuple(np.diff(np.r_[0, cuts[cuts > 0], len(qid)]).tolist())


class CostModel:
    """Both boosters and the header saying what they were trained for (module docstring).

    Rows handed to `scores`, `predict_ms` and `order` are feature dicts {name: number}; a name
    may carry the dataset's "f." prefix or not; missing names and None are "not applicable"."""

    def __init__(self, ranker, regressor, header: dict, path: str | None = None):
        self.ranker, self.regressor, self.header, self.path = ranker, regressor, header, path
        self.features = list(header["features"])
        base = [name for name in self.features if not name.startswith(RELATIVE_PREFIX)]
        self._index = {name: j for j, name in enumerate(base)}
        self._index.update({FEATURE_PREFIX + name: j for j, name in enumerate(base)})
        self._base = len(base)
        self._relative = [self._index[name[len(RELATIVE_PREFIX):]] for name in self.features[len(base):]
                          if name[len(RELATIVE_PREFIX):] in self._index]
        if len(base) + len(self._relative) != len(self.features) or self.features[:len(base)] != base:
            raise CostModelError(f"{path or 'cost model'}: header features: relative ({RELATIVE_PREFIX}) features "
                                 "must follow the others and name one of them")
        for booster in (ranker, regressor):
            booster.set_param({"nthread": 1})  # ~30 rows: threads cost more than they save

    def __repr__(self) -> str:
        h = self.header
        return (f"CostModel({self.path or 'not saved'}: target {h['target']!r}, machine {h['machine_id']!r}, "
                f"feature version {h['feature_version']}, {h['trained_on']['rows']} rows)")

    def matrix(self, rows: list[dict]) -> np.ndarray:
        """`rows` (the candidates of one kernel) as the float32 matrix the boosters read (NaN:
        not applicable), relative columns computed among these rows."""
        x = np.full((len(rows), self._base), np.nan, np.float32)
        index = self._index
        for i, row in enumerate(rows):
            for name, value in row.items():
                j = index.get(name)
                if j is not None and value is not None:
                    x[i, j] = value
        if not self._relative:
            return x
        return np.hstack([x, _relative(x[:, self._relative].astype(np.float64)).astype(np.float32)])

    def scores(self, rows: list[dict]) -> np.ndarray:
        """The ranker's score of each row: higher is faster (comparable within one kernel)."""
        return self.ranker.inplace_predict(self.matrix(rows))

    def predict_ms(self, rows: list[dict]) -> np.ndarray:
        """The regressor's time of each row, in milliseconds."""
        return np.exp(self.regressor.inplace_predict(self.matrix(rows)).astype(np.float64))

    def order(self, rows: list[dict], top_k: int = 3, margin: float = 0.05) -> tuple[list[int], bool]:
        """Indices of `rows` best first (the ranker's order), and whether the model is unsure:
        the regressor predicts one of the ranker's next `max(top_k, 2) - 1` faster than the
        first by more than `margin` (the two models disagree on the best); then the caller
        measures the first `top_k`."""
        if len(rows) < 2:
            return list(range(len(rows))), False
        x = self.matrix(rows)
        ranking = np.argsort(-self.ranker.inplace_predict(x), kind="stable")
        log_ms = self.regressor.inplace_predict(x[ranking[:max(2, top_k)]])
        unsure = bool(np.min(log_ms[1:]) < log_ms[0] - math.log1p(margin))
        return ranking.tolist(), unsure

    def check(self, target: str, machine_id: str, feature_version: int) -> None:
        """ModelMismatch unless this model was trained for `target`, `machine_id` and
        `feature_version` (what the caller runs on)."""
        h = self.header
        if (h["target"], h["machine_id"], h["feature_version"]) == (target, machine_id, feature_version):
            return
        raise ModelMismatch(
            f"{self.path or 'the cost model (not saved)'} was trained for target {h['target']!r}, machine "
            f"{h['machine_id']!r} (feature version {h['feature_version']}); this is target {target!r}, "
            f"machine {machine_id!r} (feature version {feature_version}): the model is not used, "
            "fastc uses its heuristic")

    def save(self, path: str | os.PathLike) -> None:
        """One JSON file: {"header", "ranker", "regressor"}, each booster as XGBoost's JSON."""
        doc = {"header": self.header, "ranker": json.loads(self.ranker.save_raw("json")),
               "regressor": json.loads(self.regressor.save_raw("json"))}
        try:
            text = json.dumps(doc, allow_nan=False)
        except ValueError as e:
            raise CostModelError(f"{path}: the model holds a number JSON cannot write ({e})") from e
        with open(path, "w") as f:
            f.write(text)
        self.path = os.fspath(path)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CostModel":
        """The model saved at `path` (the module's `load`)."""
        return load(path)


def load(path: str | os.PathLike) -> CostModel:
    """The CostModel saved at `path`; CostModelError naming `path` for a missing, unreadable,
    malformed or refused file (every field is checked before XGBoost reads a booster)."""
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
        if size > MAX_FILE_BYTES:
            raise CostModelError(f"{path}: {size} bytes, more than a cost model has ({MAX_FILE_BYTES})")
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except CostModelError:
        raise
    except (OSError, UnicodeDecodeError) as e:
        raise CostModelError(f"{path}: cannot read the cost model ({e})") from e
    except (ValueError, RecursionError) as e:  # JSONDecodeError, too many digits, too deep
        raise CostModelError(f"{path}: not a JSON cost model ({str(e)[:200]})") from e
    if not isinstance(doc, dict) or set(doc) != {"header", "ranker", "regressor"}:
        got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
        raise CostModelError(f"{path}: expected a JSON object with header, ranker and regressor (got {got})")
    header = _checked_header(doc["header"], path)
    n = len(header["features"])
    ranker = _booster(doc["ranker"], n, {"rank:pairwise", "rank:ndcg", "rank:map"}, f"{path}: ranker")
    regressor = _booster(doc["regressor"], n, {REGRESSOR_OBJECTIVE}, f"{path}: regressor")
    return CostModel(ranker, regressor, header, path=path)


# The header's fields and their types (ints are never bools).
_HEADER = {"format": str, "format_version": int, "target": str, "machine_id": str, "machine": dict,
           "feature_version": int, "features": list, "trained_on": dict, "created": str}
_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "a list"}


def _checked_header(header, where: str) -> dict:
    """`header` if it has every field of _HEADER, of its type, for this format."""
    if not isinstance(header, dict):
        raise CostModelError(f"{where}: header is a {type(header).__name__}, not an object")
    _walk(header, where + ": header")
    for name, kind in _HEADER.items():
        value = header.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise CostModelError(f"{where}: header field {name!r} should be {_TYPE_NAMES[kind]}, "
                                 f"got {json.dumps(value)[:40]}")
    if header["format"] != FORMAT or header["format_version"] != FORMAT_VERSION:
        raise CostModelError(f"{where}: format {header['format']!r} version {header['format_version']}; "
                             f"this fastc reads {FORMAT!r} version {FORMAT_VERSION}")
    features = header["features"]
    if not features or not all(isinstance(f, str) for f in features) or len(set(features)) != len(features):
        raise CostModelError(f"{where}: header features should be distinct names (strings), at least one")
    trained = header["trained_on"]
    if not (_is_int(trained.get("rows")) and _is_int(trained.get("groups"))
            and isinstance(trained.get("models"), list) and all(isinstance(m, str) for m in trained["models"])):
        raise CostModelError(f"{where}: header trained_on should hold rows and groups (ints) and models (names)")
    return header


def _booster(obj, n_features: int, objectives: set, where: str):
    """An xgboost.Booster from its JSON object, loaded only once every field XGBoost trusts is
    checked: a tree whose child or feature index is out of range, or whose nodes form a cycle,
    crashes XGBoost's prediction (segmentation fault), so none reaches it."""
    import xgboost
    _walk(obj, where)
    try:
        learner = obj["learner"]
        params = learner["learner_model_param"]
        if (params["num_feature"], params["num_class"], params["num_target"]) != (str(n_features), "0", "1"):
            raise CostModelError(f"{where}: {params['num_feature']} features, {params['num_class']} classes and "
                                 f"{params['num_target']} targets; expected {n_features}, 0 and 1")
        if learner["objective"]["name"] not in objectives:
            raise CostModelError(f"{where}: objective {learner['objective']['name']!r} (valid: {sorted(objectives)})")
        gbm = learner["gradient_booster"]
        if gbm["name"] != "gbtree":
            raise CostModelError(f"{where}: booster {gbm['name']!r}, expected 'gbtree'")
        model = gbm["model"]
        trees = model["trees"]
        if not isinstance(trees, list) or len(trees) > MAX_TREES:
            raise CostModelError(f"{where}: trees should be a list of at most {MAX_TREES}")
        count = len(trees)
        if (model["gbtree_model_param"] != {"num_parallel_tree": "1", "num_trees": str(count)}
                or model["tree_info"] != [0] * count or model["iteration_indptr"] != list(range(count + 1))):
            raise CostModelError(f"{where}: tree counts disagree (num_trees, tree_info, iteration_indptr)")
        if any(v != [] for v in model.get("cats", {}).values()):
            raise CostModelError(f"{where}: categorical splits, which fastc's models do not have")
        for i, tree in enumerate(trees):
            _check_tree(tree, i, n_features, f"{where}: tree {i}")
    except (KeyError, TypeError, AttributeError) as e:
        raise CostModelError(f"{where}: not an XGBoost tree model ({type(e).__name__}: {e})") from e
    booster = xgboost.Booster()
    try:
        booster.load_model(bytearray(json.dumps(obj).encode()))
        ok = booster.num_features() == n_features and booster.num_boosted_rounds() == count
        ok = ok and bool(np.isfinite(booster.inplace_predict(np.full((1, n_features), np.nan, np.float32))).all())
    except xgboost.core.XGBoostError as e:
        raise CostModelError(f"{where}: XGBoost refused the booster ({str(e).splitlines()[0][:200]})") from e
    if not ok:
        raise CostModelError(f"{where}: the loaded booster does not predict {n_features} features to a number")
    return booster


_INT_ARRAYS = ("left_children", "right_children", "parents", "split_indices", "split_type", "default_left")
_FLOAT_ARRAYS = ("split_conditions", "base_weights", "loss_changes", "sum_hessian")
_ROOT_PARENT = (2147483647, -1)


def _check_tree(tree: dict, i: int, n_features: int, where: str) -> None:
    """One tree's arrays: lengths, index ranges, and nodes reachable from the root forming a tree."""
    param = tree["tree_param"]
    n = param["num_nodes"]
    if not (isinstance(n, str) and n.isdigit() and 0 < int(n) <= MAX_NODES):
        raise CostModelError(f"{where}: num_nodes {n!r} (1 to {MAX_NODES})")
    n = int(n)
    if (param["num_feature"], param["size_leaf_vector"] in ("0", "1"), tree["id"]) != (str(n_features), True, i):
        raise CostModelError(f"{where}: tree_param or id do not match the model")
    for name in _INT_ARRAYS + _FLOAT_ARRAYS:
        values = _numbers(tree[name], "i" if name in _INT_ARRAYS else "if")
        if values is None or len(values) != n or (name in _INT_ARRAYS and values.min() < -1):
            raise CostModelError(f"{where}: {name} should be a list of {n} "
                                 + ("integers (-1 or more)" if name in _INT_ARRAYS else "numbers"))
    if any(tree.get(name, []) != [] for name in
           ("categories", "categories_nodes", "categories_segments", "categories_sizes")) or any(tree["split_type"]):
        raise CostModelError(f"{where}: categorical splits, which fastc's models do not have")
    left, right, parents, split = tree["left_children"], tree["right_children"], tree["parents"], tree["split_indices"]
    if parents[0] not in _ROOT_PARENT:
        raise CostModelError(f"{where}: node 0 has a parent, so it is not the root")
    seen, todo = {0}, [0]
    while todo:
        node = todo.pop()
        a, b = left[node], right[node]
        if a == -1 and b == -1:
            continue
        if not (0 <= split[node] < n_features):
            raise CostModelError(f"{where}: node {node} splits on feature {split[node]} (the model has {n_features})")
        for child in (a, b):
            if not (0 < child < n) or child in seen or parents[child] != node:
                raise CostModelError(f"{where}: node {node} has child {child}, not a node of this tree below it")
            seen.add(child)
            todo.append(child)


def _walk(obj, where: str) -> None:
    """CostModelError if `obj` (parsed JSON) nests deeper than MAX_DEPTH_JSON or holds a number
    that is not finite or an integer past 64 bits."""
    todo = [(obj, 1)]
    while todo:
        value, depth = todo.pop()
        if depth > MAX_DEPTH_JSON:
            raise CostModelError(f"{where}: nested more than {MAX_DEPTH_JSON} deep")
        if isinstance(value, dict):
            todo.extend((v, depth + 1) for v in value.values())
        elif isinstance(value, list):
            if _numbers(value, "if") is None:  # XGBoost's long arrays are checked at numpy's speed
                todo.extend((v, depth + 1) for v in value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise CostModelError(f"{where}: holds the number {value}")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 1 << 63:
            raise CostModelError(f"{where}: holds an integer of {value.bit_length()} bits")


def _numbers(values, kinds: str) -> np.ndarray | None:
    """`values` as an array if it is a non-empty flat list of finite numbers whose numpy dtype
    kind is one of `kinds` ("i": int64, "f": float64), else None."""
    if not isinstance(values, list) or not values or not isinstance(values[0], (int, float)):
        return None
    try:
        array = np.array(values)
    except (ValueError, OverflowError):  # ragged nesting
        return None
    if array.ndim != 1 or array.dtype.kind not in kinds:  # strings, None, ints past int64: elsewise
        return None
    return array if array.dtype.kind == "i" or np.isfinite(array).all() else None


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 63


def _floats(table: pa.Table, name: str) -> np.ndarray:
    column = pc.fill_null(table.column(name).cast(pa.float64()), float("nan"))
    return column.to_numpy()


def _strings(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).cast(pa.string()).to_pylist(), dtype=object)


def _one_value(table: pa.Table, name: str):
    """The value every row of column `name` has; ValueError naming the values if they differ."""
    counts = Counter(table.column(name).to_pylist())
    if len(counts) > 1:
        raise ValueError(f"dataset mixes {name}s {dict(counts.most_common())}: a cost model is for one "
                         f"machine and feature version; filter the rows to one {name} first")
    return next(iter(counts))


def _machine(text) -> dict:
    """The machine column's JSON as a dict ({"description": text} for text that is not)."""
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        value = None
    return value if isinstance(value, dict) else {"description": str(text)}
