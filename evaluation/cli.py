"""The `fastc accuracy` subcommand; compiler/cli.py finds register(subparsers) here.

    fastc accuracy --list                                     models, stored metrics, lossy passes
    fastc accuracy --model digits-cnn --passes 'prune-magnitude{fraction=0.2}'
    fastc accuracy --model char-lm --passes 'add-weight-noise{relative_std=0.05}' --seeds 0 1 2 --json
    fastc accuracy --model digits-cnn --transform prune-50,recalibrate-bn   (older names, see below)
    fastc accuracy --train digits-vit [--steps N]             reproduce weights

--passes takes a pass pipeline as `fastc-opt -p` does. --transform takes the names the harness had
before its rewrites became passes; each stands for a pipeline (TRANSFORMS).
"""
import argparse
import dataclasses
import json
import re
import sys
from pathlib import Path

from fastc.cli import positive_int

from . import weights_io, zoo

#: The older --transform names and the pipelines they stand for; `prune-<pct>` and `noise-<pct>`
#: take a percentage.
TRANSFORMS = {
    "identity": "",
    "round-fp16": "round-weights",
    "zero-weights": "zero-weights",
    "recalibrate-bn": "recalibrate-batchnorm",
    "prune-<pct>": "prune-magnitude{{fraction={}}}",
    "noise-<pct>": "add-weight-noise{{relative_std={}}}",
}


def transform_spec(names: str) -> str:
    """The pipeline a comma-separated chain of --transform names stands for:
    "prune-50,recalibrate-bn" -> "prune-magnitude{fraction=0.5},recalibrate-batchnorm"."""
    specs = []
    for name in filter(None, (n.strip() for n in names.split(","))):
        match = re.fullmatch(r"(prune|noise)-(\d+(?:\.\d+)?)", name)
        if match:
            specs.append(TRANSFORMS[f"{match.group(1)}-<pct>"].format(float(match.group(2)) / 100))
        elif name in TRANSFORMS and "<pct>" not in name:
            specs.append(TRANSFORMS[name])
        else:
            raise ValueError(f"unknown transform '{name}' (valid: {', '.join(TRANSFORMS)}; chain with "
                             "commas; or give a pass pipeline with --passes)")
    return ",".join(filter(None, specs))


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "accuracy", help="measure what a pass pipeline costs in accuracy on the reference models",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list reference models, stored metrics and lossy passes")
    p.add_argument("--model", choices=list(zoo.REFERENCE), help="reference model to measure")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--passes", metavar="SPEC", help="pass pipeline, e.g. 'prune-magnitude{fraction=0.5}' "
                      "(see fastc-opt --list)")
    what.add_argument("--transform", metavar="NAMES",
                      help=f"older names for pipelines ({', '.join(TRANSFORMS)}; chain with commas)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="seeds to run the passes under (each sets the passes' seed option)")
    p.add_argument("--calibration", type=positive_int, metavar="N",
                   help="calibration samples from the training split (default: the harness's, 64)")
    p.add_argument("--accuracy-budget", type=float, metavar="ERROR",
                   help="the largest relative L2 output error each lossy pass may add (it keeps the rewrites that fit)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--train", metavar="MODEL", choices=list(zoo.REFERENCE), help="retrain a reference model")
    p.add_argument("--steps", type=positive_int, help="with --train: override the number of training steps")
    p.add_argument("--out", type=Path, default=weights_io.WEIGHTS_DIR, help="with --train: output folder")
    p.set_defaults(func=run)
    return p


def list_models(out=None) -> None:
    from fastc.passes import PASSES

    out = out or sys.stdout
    for name, spec in zoo.REFERENCE.items():
        record = weights_io.load_record(name)
        if record is None:
            stored = "no weights stored"
        else:
            stored = ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items())
            stored += f"; {record['parameters']:,} params; trained {record['train_seconds']:.0f}s"
        out.write(f"{name:<12} {spec.description}\n{'':<12} metric {spec.metric} "
                  f"({'higher' if spec.higher_is_better else 'lower'} is better): {stored}\n")
    out.write("lossy passes (--passes; any pass of fastc-opt --list may be named):\n")
    for name, cls in sorted(PASSES.items()):
        if not cls.exact:
            options = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls))
            doc = (cls.__doc__ or "").strip().splitlines()[0]
            out.write(f"  {name}{'{' + options + '}' if options else ''}\n      {doc}\n")
    out.write(f"--transform names: {', '.join(TRANSFORMS)} (chain with commas); each is a pipeline: "
              + "; ".join(f"{k} = {v.format('<pct>/100') if '<pct>' in k else (v or '(no passes)')}"
                          for k, v in TRANSFORMS.items()) + "\n")


def run(args: argparse.Namespace) -> int:
    from fastc.passes import parse_pipeline

    from .accuracy import measure
    from .train import train_reference

    if args.list:
        list_models()
        return 0
    if args.train:
        if args.out.exists() and not args.out.is_dir():
            return _fail(f"--out {args.out} is a file, not a folder")
        spec = zoo.reference(args.train)
        settings = spec.settings if args.steps is None else dataclasses.replace(spec.settings, steps=args.steps)
        train_reference(args.train, settings=settings, folder=args.out)
        return 0
    if not args.model:
        return _fail(f"give --model MODEL, --list or --train MODEL (models: {', '.join(zoo.REFERENCE)})")
    if args.transform is not None:
        what = f"transform {args.transform!r}"
        try:
            pipeline = transform_spec(args.transform)
        except ValueError as e:
            return _fail(str(e))
    else:
        pipeline = args.passes or ""
        what = f"--passes {pipeline!r}"
    try:
        passes = parse_pipeline(pipeline)
    except ValueError as e:
        return _fail(f"{what}: {e}")
    if args.accuracy_budget is not None and not 0 <= args.accuracy_budget < float("inf"):
        return _fail(f"--accuracy-budget {args.accuracy_budget} is not valid (expected a finite number >= 0)")
    calibration = {} if args.calibration is None else {"calibration": args.calibration}
    report = measure(args.model, passes, seeds=args.seeds, accuracy_budget=args.accuracy_budget,
                     **calibration)
    if args.transform is not None:
        report.notes.append(f"--transform {args.transform} is --passes '{report.passes}'")
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text())
    return 0


def _fail(message: str) -> int:
    """A mistake on the command line: one line on stderr, exit status 2."""
    print(f"fastc accuracy: error: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: python -m fastc_eval.cli accuracy ..."""
    parser = argparse.ArgumentParser(prog="fastc")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
