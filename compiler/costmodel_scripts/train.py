"""`fastc costmodel train DIR... --out MODEL.json`: fit the learned cost model
(fastc.costmodel.learned) on collected datasets and save it, on one machine or with xgboost's
Dask interface on a cluster (`scheduler`). A model is for one target and one machine: a dataset
of several machines needs `machine`."""
from __future__ import annotations

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
    trained = model.header["trained_on"]
    print(f"trained on {trained['rows']} timed rows of {trained['groups']} kernels in {len(trained['models'])} "
          f"models ({len(model.features)} features), target {target}, machine {model.header['machine_id']}")
    print(f"saved {out}")
    return 0


def single_target(data, paths: list[str]) -> str:
    """The one target the rows of `data` (a table) were measured on; CommandError if they mix."""
    targets = sorted(set(data.column("target").to_pylist()))
    if len(targets) != 1:
        raise CommandError(f"{', '.join(paths)}: rows of {len(targets)} targets ({', '.join(map(str, targets))}); "
                           "a model is for one target: give datasets of one")
    return targets[0]
