"""`fastc costmodel`: collect timings of every candidate of every kernel, train the learned cost
model on them, evaluate it on models it never saw, and show what a model or dataset holds.

    fastc costmodel collect --models bundled --target cpu --out data/cpu
    fastc costmodel collect --models bench/costmodel_models.py:sizes --out data/cpu --scheduler tcp://host:8786
    fastc costmodel train data/cpu --out cpu.json
    fastc costmodel eval data/cpu --model cpu.json --json --plots plots/
    fastc costmodel show cpu.json        (or a dataset folder, or one .parquet file)

A dataset folder holds <model>.parquet per model and card.json (what was collected, how).
A mistake in what was asked (a missing file, a FILE.py without FUNCTION, a FUNCTION returning
something else, a corrupted model file) is one line, `fastc costmodel collect: error: ...`, and
exit status 1 (2 for a bad command line). `collect` goes on past a model that fails to compile or
run (a warning naming it) and exits 1 at the end if any did, so that a script notices; run it
again to retry those: the models already collected are skipped.
"""
from __future__ import annotations

import argparse
import sys

from fastc.command_input import CommandError

TARGETS = ("cpu",)


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (fastc.cli has the same; importing it from here
    would make an import cycle, fastc.cli imports this module)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer of at least 1, got {text!r}")
    return value


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser("costmodel", help="collect timings, train and evaluate the learned cost model",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="costmodel_command", required=True)

    collect = sub.add_parser("collect", help="time every candidate of every kernel of some models")
    collect.add_argument("--models", action="append", required=True, metavar="SPEC",
                         help="FILE.py:FUNCTION (FUNCTION() returns (name, module, inputs tuple) items) or a "
                         "bundled set (bundled, tiny); repeatable")
    collect.add_argument("--target", default="cpu", choices=TARGETS, help="what runs the kernels (default cpu)")
    collect.add_argument("--out", required=True, metavar="DIR", help="folder for <model>.parquet and card.json")
    collect.add_argument("--scheduler", metavar="ADDRESS", help="a Dask scheduler: one job per model on its workers")
    collect.add_argument("--repeats", type=positive_int, default=7, metavar="N",
                         help="timed runs per candidate after the warm-up (default 7)")
    collect.add_argument("--batch", type=positive_int, metavar="N",
                         help="batch size: for the bundled sets, and passed as FUNCTION(batch=N)")
    _command(collect, _collect)

    train = sub.add_parser("train", help="train the cost model on collected datasets")
    train.add_argument("data", nargs="+", metavar="DIR", help="dataset folders (or .parquet files)")
    train.add_argument("--out", required=True, metavar="MODEL.json", help="where to save the model")
    train.add_argument("--machine", metavar="ID", help="train on this machine's rows (needed when the "
                       "datasets hold several machines': a model is for one)")
    train.add_argument("--scheduler", metavar="ADDRESS", help="train with xgboost's Dask interface on this cluster")
    _command(train, _train)

    evaluate = sub.add_parser("eval", help="evaluate the cost model, held out by model")
    evaluate.add_argument("data", metavar="DIR", help="a dataset folder (or .parquet file)")
    evaluate.add_argument("--model", metavar="MODEL.json",
                          help="the model to evaluate (default: the shipped model for this target and "
                          "machine, else one trained per held-out model)")
    evaluate.add_argument("--train", action="store_true",
                          help="train one model without each held-out model, even where a shipped model exists "
                          "(what a model never saw is measured only this way)")
    evaluate.add_argument("--machine", metavar="ID", help="evaluate on this machine's rows (needed when the "
                          "dataset holds several machines')")
    evaluate.add_argument("--json", action="store_true", help="print the metrics as JSON, the last line")
    evaluate.add_argument("--plots", metavar="DIR", help="write predicted-vs-measured and regret plots (PNG) there")
    _command(evaluate, _eval)

    show = sub.add_parser("show", help="describe a model file or a dataset")
    show.add_argument("file", metavar="FILE", help="a MODEL.json, a dataset folder or a .parquet file")
    _command(show, _show)
    return parser


def _command(parser: argparse.ArgumentParser, func) -> None:
    """`func` runs the command; a CommandError without a location names this command."""
    def run(args) -> int:
        try:
            return func(args)
        except CommandError as e:
            e.location = e.location or parser.prog
            raise
    parser.set_defaults(func=run)


def _collect(args) -> int:
    from pathlib import Path

    from .collect import run
    from .specs import entries

    models = entries(args.models, batch=args.batch)
    failed = run(models, Path(args.out), target=args.target, repeats=args.repeats, scheduler=args.scheduler,
                 log=_log)
    if failed:
        print(f"{len(failed)} of {len(models)} models not collected: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _train(args) -> int:
    from .train import train
    return train(args.data, args.out, machine=args.machine, scheduler=args.scheduler)


def _eval(args) -> int:
    from .evaluate import evaluate
    return evaluate(args.data, model=args.model, machine=args.machine, as_json=args.json, plots=args.plots,
                    train=args.train)


def _show(args) -> int:
    from .show import show
    return show(args.file)


def _log(line: str) -> None:
    """A line on stderr that leaves the progress bar whole."""
    from tqdm import tqdm
    tqdm.write(line, file=sys.stderr)
