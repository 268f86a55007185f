"""Evaluation metrics of the reference models: accuracy and NLL for classifiers, bits per character
for the language model. Evaluation runs in eval mode without gradients and restores the mode."""
import math

import torch
import torch.nn.functional as F
from torch import nn


class _EvalMode:
    """Eval mode and no gradients while measuring; a plain callable (the model fastc's
    accuracy_metric is handed: a graph behind a function) only gets the no-gradient part."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.was_training = model.training if isinstance(model, nn.Module) else None

    def __enter__(self):
        if self.was_training is not None:
            self.model.eval()
        self.grad = torch.is_grad_enabled()
        torch.set_grad_enabled(False)

    def __exit__(self, *exc):
        torch.set_grad_enabled(self.grad)
        if self.was_training is not None:
            self.model.train(self.was_training)


def classifier_metrics(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 512) -> dict:
    """{"accuracy": fraction correct, "nll": mean negative log-likelihood in nats}."""
    correct, nll = 0, 0.0
    with _EvalMode(model):
        for i in range(0, len(y), batch):
            logits = model(x[i:i + batch]).float()
            nll += F.cross_entropy(logits, y[i:i + batch], reduction="sum").item()
            correct += (logits.argmax(-1) == y[i:i + batch]).sum().item()
    return {"accuracy": correct / len(y), "nll": nll / len(y)}


def lm_metrics(model: nn.Module, windows: torch.Tensor, batch: int = 128) -> dict:
    """{"bpc": bits per character, "nll": nats per character} over windows (n, context + 1)."""
    total, count = 0.0, 0
    with _EvalMode(model):
        for i in range(0, len(windows), batch):
            w = windows[i:i + batch]
            logits = model(w[:, :-1]).float()
            total += F.cross_entropy(logits.flatten(0, 1), w[:, 1:].flatten(), reduction="sum").item()
            count += w[:, 1:].numel()
    nll = total / count
    return {"bpc": nll / math.log(2), "nll": nll}
