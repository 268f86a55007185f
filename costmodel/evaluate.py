"""How well the learned cost model chooses on networks it never saw, and what it saves.

`evaluate` holds out each network (`model` column) in turn: trains on the others' rows (or,
with more than MAX_FOLDS networks, on all but one of MAX_FOLDS folds of networks) and asks the
model about every held-out kernel problem (group) with at least two timed candidates, as the
compiler would (`CostModel.order`, timed). It reports how close the chosen candidates come to
the best measured (top1, top5, p90_regret, and top1_with_measuring: where the model is unsure
the compiler measures its first top_k), how well it orders them (kendall_tau) and times them
(mape), and the tuning time it saves against measuring every candidate. `table` prints the
result, `plots` draws it.
"""
from __future__ import annotations

import os
import time

import numpy as np

from .learned import CostModel, Measurements, measurements, train

#: At most this many trainings: networks past it are dealt round-robin into this many folds.
MAX_FOLDS = 6
HOLDOUTS = ("model", "kernel")


def evaluate(data, *, holdout: str = "model", params: dict | None = None, top_k: int = 3,
             margin: float = 0.05, model: CostModel | None = None, target: str = "cpu") -> dict:
    """Metrics of the cost model on `data` (a dataset, see learned.measurements), held out by
    `holdout` ("model": networks, or "kernel"), trained with `params`; with `model` given, that
    model on all of `data`, nothing trained. `top_k` and `margin` are passed to `order`.

    The result: the metrics (module docstring; `kendall_tau`, `top1`, `top5`, `p90_regret`,
    `mape`, `abstain`, `top1_with_measuring`, `kernels`, `candidates`, `tuning_s_exhaustive`,
    `tuning_s_model`, `tuning_speedup`, `predict_ms_per_kernel`) over all held-out groups, the
    same per network under "per_model", one record per group under "groups", and
    [measured ms, predicted ms, group] per candidate under "points"."""
    if holdout not in HOLDOUTS:
        raise ValueError(f"unknown holdout {holdout!r} (valid: {', '.join(HOLDOUTS)})")
    m = measurements(data, target)
    if model is not None:
        folds, runs = [], [(model, np.ones(len(m), bool))]
    else:
        folds, runs = _folds(getattr(m, holdout)), []
        for fold in folds:
            held = np.isin(getattr(m, holdout), fold)
            runs.append((train(m.subset(~held), target=target, params=params), held))
    records, points = [], []
    for trained, held in runs:
        test = m.subset(held)
        for where in test.group_slices():
            if where.stop - where.start >= 2:
                records.append(_group(trained, test, where, top_k, margin, points))
    per_model = {name: _summary([r for r in records if r["model"] == name])
                 for name in sorted({r["model"] for r in records})}
    return {"holdout": holdout if model is None else None, "folds": folds, "target": target,
            "machine_id": m.machine_id, "top_k": top_k, "margin": margin, **_summary(records),
            "per_model": per_model, "groups": records, "points": points}


def _folds(values: np.ndarray) -> list[list[str]]:
    """The held-out sets: each distinct value alone, or MAX_FOLDS round-robin sets of them."""
    names = sorted(set(values))
    if len(names) < 2:
        raise ValueError(f"holding out needs at least two distinct values to train on the others (got {names})")
    k = min(len(names), MAX_FOLDS)
    return [names[i::k] for i in range(k)]


def _group(model: CostModel, m: Measurements, where: slice, top_k: int, margin: float, points: list) -> dict:
    """One held-out group's record: model, kernel, group, candidates; best_ms (measured),
    chosen_ms (the ranker's first), top5_ms (best of its first five), measured_ms (what the
    compiler runs: the best of the first top_k when unsure, else chosen_ms), regret
    (chosen / best), tau, unsure, ape (mean relative error of predict_ms), order_ms (wall time
    of `order`), exhaustive_s and model_s (tuning time without and with the model).

    Tuning time: measuring exhaustively builds and times every candidate; with the model, each
    candidate's features are extracted and the model is asked; then the unsure build and time
    the first top_k, the sure build their one choice (it has to run)."""
    rows, ms = m.rows(where), m.ms[where]
    start = time.perf_counter()
    ranking, unsure = model.order(rows, top_k, margin)
    predict_s = time.perf_counter() - start
    predicted = model.predict_ms(rows)
    points.extend([float(a), float(b), str(m.group[where.start])] for a, b in zip(ms, predicted))
    tuning = m.build_s[where] + m.measure_s[where]
    best, chosen = float(ms.min()), float(ms[ranking[0]])
    tau = kendall_tau(model.scores(rows), -ms)
    return {
        "model": str(m.model[where.start]), "kernel": str(m.kernel[where.start]),
        "group": str(m.group[where.start]), "candidates": len(ms), "best_ms": best, "chosen_ms": chosen,
        "top5_ms": float(ms[ranking[:5]].min()),
        "measured_ms": float(ms[ranking[:top_k]].min()) if unsure else chosen,
        "regret": chosen / best, "tau": None if np.isnan(tau) else tau, "unsure": unsure,
        "ape": float(np.mean(np.abs(predicted - ms) / ms)), "order_ms": predict_s * 1e3,
        "exhaustive_s": float(tuning.sum()),
        "model_s": float(m.features_s[where].sum() + predict_s
                         + (tuning[ranking[:top_k]].sum() if unsure else m.build_s[where][ranking[0]])),
    }


def _summary(records: list[dict]) -> dict:
    """The metrics over `records` (groups); None where there is nothing to measure."""
    if not records:
        return {"kernels": 0, "candidates": 0}

    def total(key: str) -> float:
        return float(sum(r[key] for r in records))
    taus = [r["tau"] for r in records if r["tau"] is not None]
    candidates = sum(r["candidates"] for r in records)
    exhaustive, with_model = total("exhaustive_s"), total("model_s")
    return {
        "kernels": len(records), "candidates": candidates,
        "kendall_tau": float(np.mean(taus)) if taus else None,
        "top1": total("best_ms") / total("chosen_ms"),
        "top5": total("best_ms") / total("top5_ms"),
        "p90_regret": float(np.percentile([r["regret"] for r in records], 90)),
        "mape": float(sum(r["ape"] * r["candidates"] for r in records) / candidates),
        "abstain": float(np.mean([r["unsure"] for r in records])),
        "top1_with_measuring": total("best_ms") / total("measured_ms"),
        "tuning_s_exhaustive": exhaustive, "tuning_s_model": with_model,
        "tuning_speedup": exhaustive / with_model if with_model > 0 else None,
        "predict_ms_per_kernel": total("order_ms") / len(records),
    }


def kendall_tau(a, b) -> float:
    """Kendall's tau-b of two equally long sequences (ties counted as in scipy.stats.kendalltau);
    NaN when either has fewer than two distinct values."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    i, j = np.triu_indices(len(a), 1)
    da, db = np.sign(a[i] - a[j]), np.sign(b[i] - b[j])
    untied = np.count_nonzero(da) * np.count_nonzero(db)
    return float(np.sum(da * db) / np.sqrt(untied)) if untied else float("nan")


_COLUMNS = [("kernels", "kernels", "{:d}"), ("candidates", "cands", "{:d}"), ("kendall_tau", "tau", "{:.3f}"),
            ("top1", "top1", "{:.3f}"), ("top5", "top5", "{:.3f}"), ("p90_regret", "p90 regret", "{:.3f}"),
            ("mape", "mape", "{:.1%}"), ("abstain", "abstain", "{:.1%}"),
            ("top1_with_measuring", "top1+measure", "{:.3f}"), ("tuning_speedup", "tuning speedup", "{:.1f}x"),
            ("predict_ms_per_kernel", "ms/kernel", "{:.3f}")]


def table(result: dict) -> str:
    """The result as a text table: one line per held-out network, then all of them."""
    lines = [("network", *(title for _, title, _ in _COLUMNS))]
    for name, summary in [*result["per_model"].items(), ("all", result)]:
        lines.append((name, *(_cell(summary.get(key), form) for key, _, form in _COLUMNS)))
    widths = [max(len(line[c]) for line in lines) for c in range(len(lines[0]))]
    text = ["  ".join(cell.ljust(w) if c == 0 else cell.rjust(w) for c, (cell, w) in enumerate(zip(line, widths)))
            for line in lines]
    how = f"held out by {result['holdout']}" if result["holdout"] else "one model on all rows"
    return (f"cost model on {result['target']} ({result['machine_id']}), {how}, top_k {result['top_k']}, "
            f"margin {result['margin']:.0%}\n" + "\n".join(text))


def _cell(value, form: str) -> str:
    return "-" if value is None else form.format(value)


def plots(result: dict, data, out_dir) -> list[str]:
    """PNGs in `out_dir` (made if missing): predicted against measured time, log-log, one color
    per kernel kind (taken from `data`, the evaluated dataset; one color if None); and each
    kernel's regret (chosen / best time), sorted, with and without measuring the unsure."""
    from matplotlib.figure import Figure  # no pyplot: no backend or global state to set

    os.makedirs(out_dir, exist_ok=True)
    points = result["points"]
    measured = np.array([p[0] for p in points])
    predicted = np.array([p[1] for p in points])
    kind_of = {}
    if data is not None:
        m = measurements(data, result["target"])
        kind_of = dict(zip(m.group.tolist(), m.kind.tolist()))
    kinds = np.array([kind_of.get(p[2], "all") for p in points])
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    for kind in sorted(set(kinds)):
        ax.scatter(measured[kinds == kind], predicted[kinds == kind], s=6, alpha=0.6, label=kind)
    low, high = min(measured.min(), predicted.min()), max(measured.max(), predicted.max())
    ax.plot([low, high], [low, high], color="gray", linewidth=0.8)
    ax.set(xscale="log", yscale="log", xlabel="measured ms", ylabel="predicted ms",
           title=f"predicted vs measured (mape {result['mape']:.1%})")
    ax.legend(fontsize="small")
    scatter = os.path.join(out_dir, "predicted_vs_measured.png")
    fig.savefig(scatter, dpi=120, bbox_inches="tight")

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    groups = result["groups"]
    share = (np.arange(len(groups)) + 1) / len(groups)
    ax.step(share, sorted(r["regret"] for r in groups), where="post", label=f"top-1 ({result['top1']:.3f})")
    ax.step(share, sorted(r["measured_ms"] / r["best_ms"] for r in groups), where="post",
            label=f"measuring top {result['top_k']} when unsure ({result['top1_with_measuring']:.3f})")
    ax.set(yscale="log", xlabel="share of kernels", ylabel="chosen / best time",
           title=f"regret per kernel ({len(groups)} kernels)")
    ax.legend(fontsize="small")
    regret = os.path.join(out_dir, "regret_per_kernel.png")
    fig.savefig(regret, dpi=120, bbox_inches="tight")
    return [scatter, regret]
