"""The reference models by name: how to build, train, evaluate and calibrate each one.

    char-lm     LLaMA-style character transformer on the stdlib's .py files   metric: bpc (lower)
    digits-cnn  residual CNN with ConvFirst blocks on sklearn's digits         metric: accuracy
    digits-vit  tiny ViT on sklearn's digits                                   metric: accuracy
"""
import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from . import digits_data, stdlib_corpus, weights_io
from .char_lm import CharLM, CharLMConfig
from .digits_cnn import DigitsCNN, DigitsCNNConfig
from .digits_vit import DigitsViT, DigitsViTConfig
from .evaluate import classifier_metrics, lm_metrics
from .training import TrainSettings

LM_EVAL_CHARS = 65536  # validation characters the quick bpc metric reads (the sidecar adds full-split bpc)

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class ReferenceModel:
    name: str
    description: str
    metric: str                      # the primary metric in evaluate()'s dict
    higher_is_better: bool
    config_type: type
    settings: TrainSettings          # what the committed weights were trained with
    make: Callable[[Any], nn.Module]
    evaluate: Callable[[nn.Module], dict]
    calibration: Callable[[nn.Module, int], torch.Tensor]  # first n training inputs, never validation
    batches: Callable[[nn.Module, int], Callable[[torch.Generator], Batch]]  # (model, size) -> sampler
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def build(self, config: dict | None = None) -> nn.Module:
        """A freshly initialized model; config overrides fields of the default config."""
        return self.make(self.config_type(**(config or {})))


# ---- char-lm -------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def corpus_tokens() -> tuple[torch.Tensor, torch.Tensor, str]:
    split = stdlib_corpus.load_split()
    return stdlib_corpus.encode(split.train_text), stdlib_corpus.encode(split.val_text), split.fingerprint()


def _context(model: nn.Module) -> int:
    """The model's context length; a rewritten model (a GraphModule, say) may lack .cfg."""
    return getattr(getattr(model, "cfg", None), "context", CharLMConfig.context)


def char_lm_metrics(model: nn.Module, max_chars: int = LM_EVAL_CHARS) -> dict:
    val = corpus_tokens()[1]
    return lm_metrics(model, stdlib_corpus.eval_windows(val, _context(model), max_chars))


def _lm_calibration(model: nn.Module, n: int) -> torch.Tensor:
    context = _context(model)
    return stdlib_corpus.eval_windows(corpus_tokens()[0], context, n * context)[:n, :-1]


def _lm_batches(model: nn.Module, batch: int):
    context = _context(model)

    def next_batch(gen):
        w = stdlib_corpus.random_windows(corpus_tokens()[0], context, batch, gen)
        return w[:, :-1], w[:, 1:]
    return next_batch


def _lm_loss(logits, targets):
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


# ---- digits --------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _digits() -> digits_data.DigitsSplit:
    return digits_data.load_split()


def _digits_eval(model: nn.Module) -> dict:
    split = _digits()
    return classifier_metrics(model, split.x_val, split.y_val)


def _digits_calibration(model: nn.Module, n: int) -> torch.Tensor:
    return _digits().x_train[:n]


def _digits_batches(model: nn.Module, batch: int):
    def next_batch(gen):
        split = _digits()
        idx = torch.randint(0, len(split.y_train), (batch,), generator=gen)
        return digits_data.augment(split.x_train[idx], gen), split.y_train[idx]
    return next_batch


MODELS: dict[str, ReferenceModel] = {
    "char-lm": ReferenceModel(
        name="char-lm",
        description="6-layer LLaMA-style char transformer (RMSNorm, RoPE, SwiGLU) on stdlib .py files",
        metric="bpc", higher_is_better=False, config_type=CharLMConfig,
        settings=TrainSettings(steps=500, batch=24, lr=3e-3, warmup=30, weight_decay=0.05),
        make=CharLM, evaluate=char_lm_metrics, calibration=_lm_calibration, batches=_lm_batches,
        loss=_lm_loss),
    "digits-cnn": ReferenceModel(
        name="digits-cnn",
        description="residual CNN (BasicBlock + ConvFirst blocks, BatchNorm) on 16x16 sklearn digits",
        metric="accuracy", higher_is_better=True, config_type=DigitsCNNConfig,
        settings=TrainSettings(steps=300, batch=64, lr=3e-3, warmup=30, weight_decay=0.05),
        make=DigitsCNN, evaluate=_digits_eval, calibration=_digits_calibration,
        batches=_digits_batches, loss=F.cross_entropy),
    "digits-vit": ReferenceModel(
        name="digits-vit",
        description="tiny ViT (4x4 patches, 4 layers, dim 64) on 16x16 sklearn digits",
        metric="accuracy", higher_is_better=True, config_type=DigitsViTConfig,
        settings=TrainSettings(steps=1200, batch=64, lr=2e-3, warmup=100, weight_decay=0.05),
        make=DigitsViT, evaluate=_digits_eval, calibration=_digits_calibration,
        batches=_digits_batches, loss=F.cross_entropy),
}


def get(name: str) -> ReferenceModel:
    if name not in MODELS:
        raise ValueError(f"unknown reference model '{name}' (valid: {', '.join(MODELS)})")
    return MODELS[name]


def load(name: str) -> nn.Module:
    """The trained reference model in eval mode, built from its sidecar config and safetensors."""
    spec = get(name)
    record = weights_io.load_record(name) or {}
    model = spec.build(record.get("config"))
    model.load_state_dict(weights_io.load_state(name))
    return model.eval()
