"""`fastc costmodel train DIR... --out MODEL.json`: fit the learned cost model
(fastc.costmodel.learned) on collected datasets and save it, on one machine or with xgboost's
Dask interface on a cluster (`scheduler`). A model is for one target and one machine: a dataset
of several machines needs `machine`."""
from __future__ import annotations

import json
from pathlib import Path

from fastc.command_input import CommandError

from . import dataset
from .cluster import dask_client


def train(paths: list[str], out: str, *, machine: str | None = None, scheduler: str | None = None) -> int:
    from fastc.costmodel.learned import CostModelError
    from fastc.costmodel.learned import train as fit

    data = dataset.only_machine(dataset.read(paths), machine, paths)
    target = single_target(data, paths)
    try:
        if scheduler is None:
            model = fit(data, target=target)
        else:
            with dask_client(scheduler) as client:
                model = fit(data, target=target, dask_client=client)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        model.save(out)
    except (CostModelError, ValueError) as e:  # ValueError: rows it cannot train on, said why
        raise CommandError(f"{', '.join(paths)}: {e}") from None
    except OSError as e:
        raise CommandError(f"cannot write {out}: {e.strerror or e}") from None
    card = card_path(out)
    write_card(card, model.header, paths)
    trained = model.header["trained_on"]
    print(f"trained on {trained['rows']} timed rows of {trained['groups']} kernels in {len(trained['models'])} "
          f"models ({len(model.features)} features), target {target}, machine {model.header['machine_id']}")
    print(f"saved {out} and its dataset card {card}")
    return 0


def card_path(model_path: str) -> Path:
    """Where a model's dataset card goes: `cpu.json` -> `cpu.card.json` beside it."""
    path = Path(model_path)
    return path.with_name(path.stem + ".card.json")


def write_card(path: Path, header: dict, datasets: list[str]) -> None:
    """The dataset card of a model: what it was trained on (models, kernels, candidates, rows,
    machine, versions) and how that was measured, from the datasets' own cards."""
    cards = []
    for d in datasets:
        candidate = Path(d) / "card.json" if Path(d).is_dir() else Path(d).with_name("card.json")
        if candidate.is_file():
            try:
                cards.append((Path(d).name, json.loads(candidate.read_text())))
            except (OSError, ValueError):
                continue
    models: dict = {}
    for name, card in cards:
        for model, entry in (card.get("models") or {}).items():
            models.setdefault(model, []).append({"dataset": name, **entry})
    trained = header["trained_on"]
    text = {
        "model": Path(path).name.replace(".card.json", ".json"),
        "target": header["target"],
        "machine_id": header["machine_id"],
        "machine": header.get("machine"),
        "feature_version": header["feature_version"],
        "trained_on": trained,
        "datasets": [name for name, _ in cards] or [Path(d).name for d in datasets],
        "models": {m: models.get(m, []) for m in trained["models"]},
        "how_measured": next((c.get("how_measured") for _, c in cards if c.get("how_measured")), None),
        "versions": next((c.get("versions") for _, c in cards if c.get("versions")), None),
    }
    path.write_text(json.dumps(text, indent=1, sort_keys=True) + "\n")


def single_target(data, paths: list[str]) -> str:
    """The one target the rows of `data` (a table) were measured on; CommandError if they mix."""
    targets = sorted(set(data.column("target").to_pylist()))
    if len(targets) != 1:
        raise CommandError(f"{', '.join(paths)}: rows of {len(targets)} targets ({', '.join(map(str, targets))}); "
                           "a model is for one target: give datasets of one")
    return targets[0]
