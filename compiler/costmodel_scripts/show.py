"""`fastc costmodel show FILE`: what a cost model file was trained for and which features it
leans on, or what a dataset (a folder of Parquet files, or one file) holds."""
from __future__ import annotations

import json
from pathlib import Path

from fastc.command_input import CommandError

from . import dataset

#: Feature importances printed, at most.
TOP = 15


def show(path: str) -> int:
    p = Path(path)
    if p.is_dir() or p.suffix == ".parquet":
        show_dataset(path)
    else:
        show_model(path)
    return 0


def show_model(path: str) -> None:
    from fastc.costmodel.learned import CostModelError, load
    try:
        model = load(path)
    except CostModelError as e:
        raise CommandError(str(e)) from None
    h = model.header
    trained = h["trained_on"]
    print(f"cost model {path}")
    print(f"  target            {h['target']}")
    print(f"  machine           {h['machine_id']}: {json.dumps(h['machine'], sort_keys=True)}")
    print(f"  feature version   {h['feature_version']} ({len(model.features)} features)")
    print(f"  trained on        {trained['rows']} rows, {trained['groups']} kernels, "
          f"{len(trained['models'])} models: {', '.join(trained['models'])}")
    print(f"  created           {h['created']}")
    for name, booster in (("ranker", model.ranker), ("regressor", model.regressor)):
        ranked = importances(booster, model.features)
        print(f"  {name}: top features by gain ({min(TOP, len(ranked))} of {len(ranked)} used)")
        for feature, gain in ranked[:TOP]:
            print(f"    {gain:10.3f}  {feature}")


def importances(booster, features: list[str]) -> list[tuple[str, float]]:
    """(feature, mean gain of its splits), largest first, of the features `booster` splits on."""
    scores = booster.get_score(importance_type="gain")
    named = {}
    for key, gain in scores.items():
        if key.startswith("f") and key[1:].isdigit() and int(key[1:]) < len(features):
            key = features[int(key[1:])]  # a booster without feature names says f<index>
        named[key] = float(gain)
    return sorted(named.items(), key=lambda kv: -kv[1])


def show_dataset(path: str) -> None:
    counts = dataset.summary(dataset.read([path]))
    per_kernel = counts["candidates_per_kernel"]
    print(f"dataset {path}")
    print(f"  rows              {counts['rows']} ({counts['failed_candidates']} failed or not applicable)")
    print(f"  models            {len(counts['models'])}: {', '.join(counts['models'])}")
    print(f"  kernels           {counts['kernels']}")
    if per_kernel:
        print(f"  candidates/kernel {per_kernel['min']} to {per_kernel['max']} (median {per_kernel['median']:g})")
    print(f"  features          {counts['features']} (version {', '.join(map(str, counts['feature_versions']))})")
    print(f"  targets           {', '.join(counts['targets'])}")
    print(f"  machines          {len(counts['machines'])}")
    for machine_id, machine in counts["machines"].items():
        print(f"    {machine_id}: {json.dumps(machine, sort_keys=True)}")
    for versions in counts["versions"]:
        print(f"  versions          {versions}")
