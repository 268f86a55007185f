"""The `fastc accuracy` subcommand; compiler/cli.py calls register(subparsers).

    fastc accuracy --list                                   models, stored metrics, transforms
    fastc accuracy --model digits-cnn --transform prune-20  before / after report
    fastc accuracy --model char-lm --transform noise-5 --seeds 0 1 2 --json
    fastc accuracy --train digits-vit [--steps N]           reproduce weights
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path

from ..cli import positive_int
from . import catalog, transforms, weights_io


def register(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "accuracy", help="measure what a model rewrite costs in accuracy on the reference models",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--list", action="store_true", help="list reference models, stored metrics and transforms")
    p.add_argument("--model", choices=list(catalog.MODELS), help="reference model to measure")
    p.add_argument("--transform", default="identity",
                   help=f"transform name or comma-separated chain ({', '.join(transforms.NAMES)})")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds to run the transform under")
    p.add_argument("--calibration", type=positive_int, metavar="N",
                   help="calibration samples from the training split (default: 64 if the transform needs them)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--train", metavar="MODEL", choices=list(catalog.MODELS), help="retrain a reference model")
    p.add_argument("--steps", type=positive_int, help="with --train: override the number of training steps")
    p.add_argument("--out", type=Path, default=weights_io.WEIGHTS_DIR, help="with --train: output folder")
    p.set_defaults(func=run)
    return p


def list_models(out=None) -> None:
    out = out or sys.stdout
    for name, spec in catalog.MODELS.items():
        record = weights_io.load_record(name)
        if record is None:
            stored = "no weights stored"
        else:
            stored = ", ".join(f"{k} {v:.4f}" for k, v in record["metrics"].items())
            stored += f"; {record['parameters']:,} params; trained {record['train_seconds']:.0f}s"
        out.write(f"{name:<12} {spec.description}\n{'':<12} metric {spec.metric} "
                  f"({'higher' if spec.higher_is_better else 'lower'} is better): {stored}\n")
    out.write(f"transforms: {', '.join(transforms.NAMES)} (chain with commas)\n")


def run(args: argparse.Namespace) -> int:
    from .harness import measure
    from .train import train_reference

    if args.list:
        list_models()
        return 0
    if args.train:
        if args.out.exists() and not args.out.is_dir():
            return _fail(f"--out {args.out} is a file, not a folder")
        spec = catalog.get(args.train)
        settings = spec.settings if args.steps is None else dataclasses.replace(spec.settings, steps=args.steps)
        train_reference(args.train, settings=settings, folder=args.out)
        return 0
    if not args.model:
        return _fail(f"give --model MODEL, --list or --train MODEL (models: {', '.join(catalog.MODELS)})")
    try:
        transform = transforms.get(args.transform)
    except ValueError as e:
        return _fail(str(e))
    try:
        _try_transform(transform)
    except ValueError as e:
        return _fail(f"transform {args.transform!r}: {e}")
    calibration = args.calibration if args.calibration is not None else transform.needs_calibration
    report = measure(args.model, transform, calibration=calibration, seeds=args.seeds)
    print(json.dumps(report.to_json(), indent=2) if args.json else report.text())
    return 0


def _fail(message: str) -> int:
    """A mistake on the command line: one line on stderr, exit status 2."""
    print(f"fastc accuracy: error: {message}", file=sys.stderr)
    return 2


def _try_transform(transform: transforms.Transform) -> None:
    """Runs the transform on a tiny throwaway model, so that a parameter it rejects (prune-200:
    a fraction above 1) is a ValueError now, before the reference model is loaded and evaluated,
    and not a traceback from inside measure(). The global RNG is left as it was."""
    import torch
    from torch import nn

    with torch.random.fork_rng(devices=[]):
        probe = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
        if transform.needs_calibration:
            transform(probe, torch.randn(8, 4))
        else:
            transform(probe)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: python -m fastc.reference.cli accuracy ..."""
    parser = argparse.ArgumentParser(prog="fastc")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
