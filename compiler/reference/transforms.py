"""Demonstration transforms for the accuracy harness (the real lossy passes come later).

    identity         returns the model unchanged
    prune-<pct>      zeroes the pct% smallest-magnitude entries of each weight matrix / conv kernel
    round-fp16       round-trips every floating parameter and buffer through fp16
    noise-<pct>      adds Gaussian noise with std pct% of each weight tensor's std (stochastic)
    zero-weights     zeroes every weight matrix / conv kernel (destructive; a harness sanity check)
    recalibrate-bn   re-estimates BatchNorm running statistics on calibration inputs

Names chain with commas, applied left to right: "prune-50,recalibrate-bn".
"""
import re
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class Transform:
    """A named model -> model rewrite; needs_calibration ones are called as fn(model, inputs)."""
    name: str
    fn: Callable
    needs_calibration: bool = False

    def __call__(self, model: nn.Module, calibration: torch.Tensor | None = None) -> nn.Module:
        if self.needs_calibration:
            if calibration is None:
                raise ValueError(f"transform '{self.name}' needs calibration inputs")
            return self.fn(model, calibration)
        return self.fn(model)


def weight_tensors(model: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters with two or more dimensions: Linear, Embedding and Conv weights."""
    return [p for p in model.parameters() if p.dim() >= 2]


@torch.no_grad()
def prune_magnitude(model: nn.Module, fraction: float) -> nn.Module:
    """Zero the `fraction` smallest-|w| entries of each weight tensor, in place."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"prune fraction must be in [0, 1], got {fraction}")
    for p in weight_tensors(model):
        k = int(round(fraction * p.numel()))
        if k > 0:
            threshold_idx = p.abs().flatten().argsort()[:k]
            p.view(-1)[threshold_idx] = 0.0
    return model


@torch.no_grad()
def round_fp16(model: nn.Module) -> nn.Module:
    for t in [*model.parameters(), *model.buffers()]:
        if t.is_floating_point():
            t.copy_(t.half().to(t.dtype))
    return model


@torch.no_grad()
def add_noise(model: nn.Module, relative_std: float) -> nn.Module:
    """Add N(0, (relative_std * std(w))^2) to each weight tensor, drawn from torch's global RNG."""
    for p in weight_tensors(model):
        p.add_(torch.randn_like(p) * (relative_std * p.std()))
    return model


@torch.no_grad()
def zero_weights(model: nn.Module) -> nn.Module:
    for p in weight_tensors(model):
        p.zero_()
    return model


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, inputs: torch.Tensor, batch: int = 256) -> nn.Module:
    """Reset every BatchNorm's running mean / var and re-estimate them (cumulative average)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for i in range(0, len(inputs), batch):
        model(inputs[i:i + batch])
    model.train(was_training)
    return model


_FIXED = {
    "identity": Transform("identity", lambda m: m),
    "round-fp16": Transform("round-fp16", round_fp16),
    "zero-weights": Transform("zero-weights", zero_weights),
    "recalibrate-bn": Transform("recalibrate-bn", recalibrate_batchnorm, needs_calibration=True),
}
_PERCENT = {"prune": prune_magnitude, "noise": add_noise}
NAMES = [*_FIXED, *(f"{k}-<pct>" for k in _PERCENT)]


def _one(name: str) -> Transform:
    if name in _FIXED:
        return _FIXED[name]
    match = re.fullmatch(r"(\w+)-(\d+(?:\.\d+)?)", name)
    if match and match.group(1) in _PERCENT:
        fn, frac = _PERCENT[match.group(1)], float(match.group(2)) / 100.0
        return Transform(name, lambda m: fn(m, frac))
    raise ValueError(f"unknown transform '{name}' (valid: {', '.join(NAMES)}; chain with commas)")


def get(spec: str) -> Transform:
    """The transform for a name or a comma-separated chain of names."""
    parts = [_one(s.strip()) for s in spec.split(",") if s.strip()]
    if not parts:
        raise ValueError(f"empty transform '{spec}' (valid: {', '.join(NAMES)})")
    if len(parts) == 1:
        return parts[0]
    needs = any(t.needs_calibration for t in parts)

    def chain(model, calibration=None):
        for t in parts:
            model = t(model, calibration)
        return model
    return Transform(",".join(t.name for t in parts), chain if needs else (lambda m: chain(m)), needs)
