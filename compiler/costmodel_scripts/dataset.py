"""The cost-model dataset on disk: one Parquet file per model, and a dataset card beside them.

    DIR/<model>.parquet   one row per kernel, problem and candidate (COLUMNS, then f.<feature>)
    DIR/card.json         what was collected, on which machines, measured how

A model's file is written whole or not at all (a temporary file renamed), so a file that reads
back is a collected model and `collect` skips it when run again. Each file's schema metadata
(key b"fastc") holds what the rows do not: seconds spent, repeats, kernels not measured again,
warnings. `read` reads the Parquet files of folders; pyarrow.dataset on a folder itself needs
`exclude_invalid_files=True` (card.json is not Parquet).
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from fastc.command_input import CommandError

#: The columns, shared with the model's trainer (fastc.costmodel.learned) and evaluation; the
#: features follow as float columns `f.<name>`.
COLUMNS = {
    "model": pa.string(),        # the model's name (--models)
    "kernel": pa.string(),       # the kernel's name in its graph (k3_reduction)
    "group": pa.string(),        # one kernel at one problem in one model: model/kernel/digest
    "kind": pa.string(),         # pointwise, reduction, matmul, library
    "candidate": pa.string(),    # JSON: "aten", or the schedule's fields
    "is_aten": pa.bool_(),
    "ms": pa.float64(),          # median of the timed runs; null: the candidate failed (see error)
    "ms_min": pa.float64(),      # fastest timed run
    "noise": pa.float64(),       # (75th - 25th percentile) / median of the timed runs
    "runs": pa.int64(),          # timed runs (the warm-up run not counted)
    "build_s": pa.float64(),     # warm-up run less the median run: building the candidate
    "measure_s": pa.float64(),   # every run of this candidate, warm-up included
    "features_s": pa.float64(),  # computing its features (describe)
    "machine_id": pa.string(),   # fastc.costmodel.machine.machine_id() where it was measured
    "machine": pa.string(),      # JSON of fastc.costmodel.machine.fingerprint()
    "versions": pa.string(),     # JSON {torch, torch_mlir, xgboost, fastc}
    "feature_version": pa.int64(),  # fastc.costmodel.mlir_features.FEATURE_VERSION
    "target": pa.string(),       # the fastc target measured on (cpu)
}
#: After COLUMNS, before the features.
EXTRA_COLUMNS = {
    "problem": pa.string(),      # JSON {sizes, inputs: [shape, strides, dtype] each}
    "error": pa.string(),        # why the candidate failed, or why it has no features; else null
    "others_busy": pa.float64(), # cores other processes kept busy while it was timed (null: unknown)
}
CARD = "card.json"
META_KEY = b"fastc"


def to_table(rows: list[dict], meta: dict) -> pa.Table:
    """`rows` (dicts with the COLUMNS, EXTRA_COLUMNS and f.<name> keys) as a table; `meta` in
    its schema metadata."""
    missing = [n for n in COLUMNS if any(n not in r for r in rows)]
    if missing:
        raise ValueError(f"dataset rows lack the columns {', '.join(missing)}")
    features = sorted({k for r in rows for k in r if k.startswith("f.")})
    fields = [pa.field(n, t) for n, t in {**COLUMNS, **EXTRA_COLUMNS}.items()]
    fields += [pa.field(n, pa.float64()) for n in features]
    schema = pa.schema(fields, metadata={META_KEY: json.dumps(meta, sort_keys=True).encode()})
    return pa.Table.from_pylist([{f.name: r.get(f.name) for f in fields} for r in rows], schema=schema)


def write(table: pa.Table, path: Path) -> None:
    """`table` to `path`, atomically: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def collected(path: Path) -> bool:
    """Whether `path` holds a model's rows that read back."""
    try:
        pq.read_table(path)
    except (OSError, pa.ArrowException):
        return False
    return True


def files(paths: list[str]) -> list[Path]:
    """The Parquet files of `paths` (folders: every *.parquet in them); CommandError naming a
    path that is missing or holds none."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(p.glob("*.parquet"))
            if not found:
                raise CommandError(f"no .parquet files in {p} (collect a dataset there with `fastc costmodel collect`)")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise CommandError(f"no such dataset: {p}")
    return out


def read(paths: list[str]) -> pa.Table:
    """Every row of the datasets at `paths` as one table (feature columns a file lacks are
    null); CommandError naming a file that is not a fastc dataset."""
    tables = []
    for path in files(paths):
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as e:
            raise CommandError(f"{path} is not a readable Parquet file ({type(e).__name__}: {e})") from None
        missing = [c for c in COLUMNS if c not in table.column_names]
        if missing:
            raise CommandError(f"{path}: not a fastc cost-model dataset (no columns {', '.join(missing)})")
        tables.append(table.replace_schema_metadata(None))
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except pa.ArrowException as e:
        raise CommandError(f"{', '.join(paths)}: the files' columns do not agree ({e})") from None


def only_machine(table: pa.Table, machine_id: str | None, paths: list[str]) -> pa.Table:
    """The rows of `table` measured on `machine_id`; without one, `table` if it holds one
    machine's rows, else CommandError listing the machines (a model is for one machine)."""
    import pyarrow.compute as pc

    ids = pc.value_counts(table.column("machine_id")).to_pylist()
    if machine_id is None:
        if len(ids) > 1:
            listed = ", ".join(f"{c['values']} ({c['counts']} rows)" for c in ids)
            raise CommandError(f"{', '.join(paths)}: rows of several machines ({listed}); "
                               "pick one with --machine ID")
        return table
    if machine_id not in {c["values"] for c in ids}:
        raise CommandError(f"{', '.join(paths)}: no rows of machine {machine_id!r} "
                           f"(machines: {', '.join(c['values'] for c in ids)})")
    return table.filter(pc.field("machine_id") == machine_id)


def meta(path: Path) -> dict:
    """The metadata `to_table` stored in the file at `path` ({} if none)."""
    stored = (pq.read_schema(path).metadata or {}).get(META_KEY)
    return json.loads(stored) if stored else {}


def summary(table: pa.Table) -> dict:
    """Counts of a dataset: rows, models, kernels (groups), candidates per kernel, machines."""
    data = table.select([c for c in table.column_names if not c.startswith("f.")]).to_pandas()
    per_group = data.groupby("group").size()
    machines = {}
    for machine_id, machine in data[["machine_id", "machine"]].drop_duplicates().itertuples(index=False):
        machines[machine_id] = json.loads(machine)
    return {
        "rows": int(len(data)),
        "models": sorted(data["model"].unique().tolist()),
        "kernels": int(per_group.size),
        "candidates_per_kernel": ({"min": int(per_group.min()), "median": float(per_group.median()),
                                   "max": int(per_group.max())} if per_group.size else {}),
        "failed_candidates": int(data["ms"].isna().sum()),
        "features": sum(1 for c in table.column_names if c.startswith("f.")),
        "machines": machines,
        "feature_versions": sorted(int(v) for v in data["feature_version"].dropna().unique()),
        "targets": sorted(data["target"].unique().tolist()),
        "versions": sorted({v for v in data["versions"]}),
    }


def write_card(out: Path, failed: dict[str, str]) -> dict:
    """DIR/card.json from every model file in `out` (this run's and earlier ones') and the
    models that failed this run."""
    paths = sorted(out.glob("*.parquet"))
    card = {
        "description": "fastc cost-model dataset: every candidate (ATen, each native CPU schedule) of "
                       "every kernel fastc plans in each model, timed on the machine named in each row",
        "how_measured": (
            "collected with `fastc costmodel collect`: each model compiled with mode max-autotune and run "
            "once; at each kernel's first call every candidate runs once to warm up (and build), then "
            "`repeats` more times in interleaved rounds, one measurement at a time in the process, wall "
            "time (CUDA events on a GPU); ms is the median, noise the interquartile range over the "
            "median. Kernels of one model with the same kind, ops and problem (repeated layers) are "
            "measured once. Fusion and schedules before the first call follow fastc's heuristics."),
        "columns": "see fastc/costmodel_scripts/dataset.py (COLUMNS, EXTRA_COLUMNS), then f.<feature> "
                   "(fastc/costmodel/mlir_features.py)",
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "models": {},
        "failed": dict(sorted(failed.items())),
    }
    if paths:
        table = read([str(out)])
        card.update({k: v for k, v in summary(table).items() if k != "models"})
        data = table.select(["model", "group", "ms"]).to_pandas()
        for path in paths:
            rows = data[data["model"] == path.stem]
            per_group = rows.groupby("group").size()
            card["models"][path.stem] = {
                "kernels": int(per_group.size), "rows": int(len(rows)),
                "candidates_per_kernel": float(per_group.mean()) if per_group.size else 0.0,
                "failed_candidates": int(rows["ms"].isna().sum()), **meta(path)}
        card["repeats"] = sorted({m["repeats"] for m in card["models"].values() if "repeats" in m})
    text = json.dumps(card, indent=2, sort_keys=False) + "\n"
    tmp = out / f".{CARD}.{os.getpid()}.tmp"
    tmp.write_text(text)
    os.replace(tmp, out / CARD)
    return card
