"""`fastc costmodel collect`: time every candidate of every kernel of each model, one Parquet file
per model (dataset.py).

Each model is a job: compile it with max-autotune and a CollectingChoices, run it once (every
kernel is measured at its first call), check the outputs against eager, tag the rows with the
model, the machine and the versions. Jobs run here one after another, or on a Dask cluster
(`scheduler`), one per model, each worker measuring on its own machine and sending its rows back;
files are written here either way. A model already in DIR is skipped (collection resumes); a
model that fails is a warning naming it and the rest go on.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from fastc.command_input import CommandError

from . import dataset
from .specs import Entry, Job, build

#: One model collected at a time in a process (Dask threads included): a compilation's
#: torch._dynamo.reset() and the captured fastc warnings are process-wide.
_ONE_MODEL = threading.Lock()
#: Compiled and eager outputs must agree this closely (every candidate computes the same values).
RTOL, ATOL = 1e-3, 1e-3


@dataclass
class Result:
    """What one job sends back: the rows, or why there are none."""
    name: str
    rows: list = field(default_factory=list)
    meta: dict = field(default_factory=dict)   # stored in the file (dataset.META_KEY)
    error: str | None = None                   # the model failed: nothing is written


def collect_job(job: Job, target: str, repeats: int, on_kernel=None) -> Result:
    """Build the model of `job` here (a Dask task: on the worker), then collect it."""
    try:
        model, inputs = build(job)
    except Exception as e:  # noqa: BLE001 - the user's model: a failure is a message, not a crash
        return Result(job.name, error=f"building it failed: {type(e).__name__}: {e}")
    return collect_model(job.name, model, inputs, target=target, repeats=repeats, on_kernel=on_kernel)


def collect_model(name: str, model, inputs: tuple, *, target: str = "cpu", repeats: int = 7,
                  on_kernel=None) -> Result:
    """Compile `model` to measure every candidate of its kernels, run it once on `inputs`, and
    return its rows tagged with `name`, this machine and the versions. `on_kernel(n)` is called
    after the n-th kernel is measured."""
    import torch
    from fastc.costmodel.collecting import BUSY_CORES_MAX, CollectingChoices
    from fastc.costmodel.machine import OthersBusy, fingerprint, machine_id
    from fastc.costmodel.mlir_features import FEATURE_VERSION

    rows: list[dict] = []
    measured = []

    def kernel_done(k):
        measured.append(k.name)
        if on_kernel is not None:
            on_kernel(len(measured))
    choices = CollectingChoices(rows=rows, repeats=repeats, on_kernel=kernel_done)
    begin = time.perf_counter()
    with _ONE_MODEL, _FastcWarnings() as warnings, OthersBusy() as busy:
        try:
            torch._dynamo.reset()
            with torch.no_grad():
                expected = model(*inputs)
                compiled = torch.compile(model, backend="fastc",
                                         options={"target": target, "mode": "max-autotune", "choices": choices})
                got = compiled(*inputs)
        except Exception as e:  # noqa: BLE001 - a model that fails is reported, the rest go on
            return Result(name, error=f"{type(e).__name__}: {e}".splitlines()[0][:500])
        finally:
            torch._dynamo.reset()
    mismatch = _mismatch(expected, got)
    if mismatch:
        warnings.append(f"compiled outputs differ from eager ({mismatch}); timings kept")
    warnings += [f"kernel {k} not collected: {e}" for k, e in choices.failures]
    if busy.cores is not None and busy.cores > BUSY_CORES_MAX and not choices.contended:
        # Kernels timed in under OthersBusy.MIN_WINDOW_S are not checked one by one.
        warnings.append(f"other processes kept {busy.cores:.1f} cores busy while this model was collected "
                        "(timings may be skewed; collect again on a quiet machine)")
    if choices.contended:
        warnings.append(f"{len(choices.contended)} kernels were timed while other processes kept a core busy "
                        "(timings skewed; collect again on a quiet machine): "
                        + ", ".join(f"{k} ({cores:.1f} cores)" for k, cores in choices.contended[:4])
                        + (", ..." if len(choices.contended) > 4 else ""))
    if not rows:
        reason = "no kernel was measured (every op ran as ATen, or fastc fell back)"
        return Result(name, error="; ".join([reason, *warnings]))
    wrong = [r for r in rows if (r["error"] or "").startswith("wrong values")]
    if wrong:
        warnings.append(f"{len(wrong)} candidates computed values other than ATen's (not timed; a fastc bug): "
                        + "; ".join(f"{r['kernel']} under {_text(r['candidate'])}" for r in wrong[:4])
                        + ("; ..." if len(wrong) > 4 else ""))
    failed = [r["error"] for r in rows if r["ms"] is None]
    if 2 * len(failed) > len(rows):
        common = max(set(failed), key=failed.count)
        warnings.append(f"{len(failed)} of {len(rows)} candidates failed or do not apply (most often: {common})")
    tags = {"model": name, "machine_id": machine_id(), "machine": json.dumps(fingerprint(), sort_keys=True),
            "versions": json.dumps(versions(), sort_keys=True), "feature_version": FEATURE_VERSION}
    for row in rows:
        row.update(tags, group=f"{name}/{row['group']}")
    meta = {"seconds": round(time.perf_counter() - begin, 3), "repeats": repeats, "target": target,
            "repeated_kernels": choices.repeated, "contended_kernels": len(choices.contended),
            "others_busy": None if busy.cores is None else round(busy.cores, 3),
            "warnings": warnings}
    return Result(name, rows=rows, meta=meta)


def versions() -> dict:
    """Versions of what the timings depend on."""
    out = {}
    for key, dist in (("torch", "torch"), ("torch_mlir", "torch-mlir"), ("xgboost", "xgboost"), ("fastc", "fastc")):
        try:
            out[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[key] = None
    return out


def run(entries: list[Entry], out: Path, *, target: str = "cpu", repeats: int = 7,
        scheduler: str | None = None, log=print) -> dict[str, str]:
    """Collect every model of `entries` not yet in `out`; returns {model: reason} of those that
    failed. `log` prints a line (warnings, skips) without breaking the progress bar."""
    from tqdm import tqdm

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CommandError(f"cannot make the folder {out}: {e.strerror or e}") from None
    todo = []
    for entry in entries:
        if dataset.collected(out / f"{entry.job.name}.parquet"):
            log(f"skipping {entry.job.name}: already collected in {out}")
        else:
            todo.append(entry)
    failed: dict[str, str] = {}
    bar = tqdm(total=len(todo), unit="model", desc="collect", dynamic_ncols=True)

    def done(result: Result):
        for w in result.meta.get("warnings", []):
            log(f"warning: {result.name}: {w}")
        if result.error is not None:
            failed[result.name] = result.error
            log(f"warning: {result.name} not collected: {result.error}")
        else:
            dataset.write(dataset.to_table(result.rows, result.meta), out / f"{result.name}.parquet")
        bar.update(1)

    try:
        if scheduler is None:
            _run_here(todo, target, repeats, done, bar)
        else:
            _run_on_cluster([e.job for e in todo], scheduler, target, repeats, done, bar)
    finally:
        bar.close()
        dataset.write_card(out, failed)
    return failed


def _run_here(entries: list[Entry], target: str, repeats: int, done, bar) -> None:
    for entry in entries:
        name = entry.job.name
        bar.set_postfix(model=name, kernels=0)

        def progress(n, name=name):
            bar.set_postfix(model=name, kernels=n)
        if entry.model is None:  # a bundled model: built now
            done(collect_job(entry.job, target, repeats, on_kernel=progress))
        else:
            done(collect_model(name, entry.model, entry.inputs, target=target, repeats=repeats, on_kernel=progress))


def _run_on_cluster(jobs: list[Job], scheduler: str, target: str, repeats: int, done, bar) -> None:
    from distributed import as_completed

    from .cluster import dask_client

    with dask_client(scheduler) as client:
        run_id = uuid.uuid4().hex[:8]
        futures = {client.submit(collect_job, job, target, repeats, pure=False, key=f"collect-{job.name}-{run_id}"): job
                   for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                result = future.result()
            except Exception as e:  # noqa: BLE001 - a worker lost, say: that model failed
                result = Result(job.name, error=f"on the cluster: {type(e).__name__}: {e}")
            bar.set_postfix(model=job.name, kernels=len({r["group"] for r in result.rows}))
            done(result)


def _text(candidate: str) -> str:
    """A row's candidate (JSON) as fastc describes it: "native, 1 thread, tiles 1x8, vectorized"."""
    from fastc.costmodel.features import candidate_text
    from fastc.ir.schedule import Schedule

    value = json.loads(candidate)
    return candidate_text(value if isinstance(value, str) else Schedule(**value))


def _mismatch(expected, got) -> str | None:
    """Why `got` (compiled outputs) is not `expected` (eager's), or None."""
    import torch
    from torch.utils._pytree import tree_flatten

    a, b = tree_flatten(expected)[0], tree_flatten(got)[0]
    if len(a) != len(b):
        return f"{len(b)} outputs, eager has {len(a)}"
    for i, (x, y) in enumerate(zip(a, b)):
        if isinstance(x, torch.Tensor) and not (isinstance(y, torch.Tensor) and x.shape == y.shape
                                                and torch.allclose(x, y, rtol=RTOL, atol=ATOL, equal_nan=True)):
            return f"output {i}"
    return None


class _FastcWarnings(logging.Handler):
    """Within `with`: fastc's warnings (a kernel run as ATen, a graph run as captured) kept as
    a list of lines instead of printed."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self) -> list[str]:
        logging.getLogger("fastc").addHandler(self)
        return self.lines

    def __exit__(self, *exc):
        logging.getLogger("fastc").removeHandler(self)
