"""Reproduce a reference model's weights: `python -m fastc_eval.train <name> [...]`.

Seeds initialization and data order from the model's TrainSettings, trains, stores the weights
(fp16 safetensors) and a JSON sidecar with config, settings, metrics and the machine it ran on.
"""
import argparse
import dataclasses
import platform
import sys
import time
from pathlib import Path

import torch
from torch import nn

from fastc.costmodel.machine import cpu_name

from . import weights_io, zoo
from .training import TrainSettings, train


def weight_stats(model: nn.Module) -> dict:
    """{"parameters", "nonzero_parameters", "bytes"}; bytes counts parameters and buffers once each."""
    params = list(model.parameters())
    seen, total_bytes = set(), 0
    for t in [*params, *model.buffers()]:
        if id(t) not in seen:
            seen.add(id(t))
            total_bytes += t.nbytes
    return {"parameters": sum(p.numel() for p in params),
            "nonzero_parameters": sum(int(torch.count_nonzero(p)) for p in params),
            "bytes": total_bytes}


def train_reference(name: str, *, settings: TrainSettings | None = None, config: dict | None = None,
                    folder: Path | None = weights_io.WEIGHTS_DIR, log=print) -> tuple[nn.Module, dict]:
    """Train `name` from scratch; save into folder unless it is None. Returns (model, record).

    The returned model holds the fp16-rounded weights that were saved, and the record's metrics
    are measured on them.
    """
    spec = zoo.reference(name)
    s = settings or spec.settings
    torch.manual_seed(s.seed)
    model = spec.build(config)
    start = time.time()
    losses = train(model, spec.batches(model, s.batch), spec.loss, s, log=log)
    seconds = time.time() - start
    model.load_state_dict({k: v.float() if v.is_floating_point() else v
                           for k, v in weights_io.storage_state(model).items()})
    model.eval()
    metrics = spec.evaluate(model)
    if name == "char-lm":
        full = zoo.char_lm_metrics(model, max_chars=10**9)
        metrics.update({f"{k}_full_val": v for k, v in full.items()})
    stats = weight_stats(model)
    record = {
        "model": name,
        "description": spec.description,
        "config": model.cfg.to_dict(),
        "settings": s.to_dict(),
        "metrics": metrics,
        "primary_metric": spec.metric,
        "final_train_loss": sum(losses[-20:]) / len(losses[-20:]),
        "first_train_loss": losses[0],
        "train_seconds": round(seconds, 1),
        "parameters": stats["parameters"],
        "stored_bytes": sum(v.nbytes for v in weights_io.storage_state(model).values()),
        "machine": {"cpu": cpu_name(), "threads": s.threads, "torch": torch.__version__,
                    "python": platform.python_version()},
    }
    if name == "char-lm":
        record["data_fingerprint"] = zoo.corpus_tokens()[2]
        record["eval_chars"] = zoo.LM_EVAL_CHARS
    if folder is not None:
        path = weights_io.save(model, name, record, folder)
        log(f"saved {path} ({path.stat().st_size / 1e6:.2f} MB)")
    log(f"{name}: " + ", ".join(f"{k} {v:.4f}" for k, v in metrics.items()) + f"  ({seconds:.0f}s)")
    return model, record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastc_eval.train",
                                description="Reproduce reference model weights.")
    p.add_argument("names", nargs="+", help=f"models to train: {', '.join(zoo.REFERENCE)} or all")
    p.add_argument("--out", type=Path, default=weights_io.WEIGHTS_DIR, help="folder for the weights")
    p.add_argument("--steps", type=int, help="override the number of training steps")
    p.add_argument("--threads", type=int, help="override torch threads (default from the settings)")
    args = p.parse_args(argv)
    names = list(zoo.REFERENCE) if args.names == ["all"] else args.names
    for name in names:
        spec = zoo.reference(name)
        overrides = {k: v for k, v in (("steps", args.steps), ("threads", args.threads)) if v is not None}
        train_reference(name, settings=dataclasses.replace(spec.settings, **overrides), folder=args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
