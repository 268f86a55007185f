"""The training loop shared by the reference models: AdamW, linear warmup then cosine decay,
gradient clipping, everything seeded so one settings object reproduces one set of weights."""
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch
from torch import nn


@dataclass(frozen=True)
class TrainSettings:
    steps: int
    batch: int
    lr: float
    weight_decay: float = 0.05
    warmup: int = 50
    clip: float = 1.0
    seed: int = 0
    threads: int = 1  # the machine is shared; 2 threads under contention run slower than 1
    log_every: int = 50

    def to_dict(self) -> dict:
        return asdict(self)


def lr_at(step: int, s: TrainSettings) -> float:
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    progress = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices and conv kernels; leave norms, biases, embeddings' peers (1-d) undecayed."""
    decay = [p for p in model.parameters() if p.requires_grad and p.dim() >= 2]
    rest = [p for p in model.parameters() if p.requires_grad and p.dim() < 2]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def train(model: nn.Module, next_batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], s: TrainSettings,
          log: Callable[[str], None] = print) -> list[float]:
    """Train in place for s.steps steps; returns the training loss of every step.

    next_batch draws (inputs, targets) with the generator it is given, seeded from s.seed, so the
    data order is reproducible; model initialization must be seeded by the caller.
    """
    torch.set_num_threads(s.threads)
    gen = torch.Generator().manual_seed(s.seed)
    opt = torch.optim.AdamW(_param_groups(model, s.weight_decay), lr=s.lr, betas=(0.9, 0.95))
    model.train()
    losses, start = [], time.time()
    for step in range(s.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, s)
        inputs, targets = next_batch(gen)
        loss = loss_fn(model(inputs), targets)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), s.clip)
        opt.step()
        losses.append(loss.item())
        if s.log_every and (step % s.log_every == 0 or step == s.steps - 1):
            recent = losses[-s.log_every:]
            log(f"step {step:5d}/{s.steps}  loss {sum(recent) / len(recent):.4f}  "
                f"lr {lr_at(step, s):.2e}  {time.time() - start:.0f}s")
    model.eval()
    return losses
