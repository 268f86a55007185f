"""The model zoo: every model that fastc's tests, demo, benchmarks and accuracy harness run, by name.

    model, inputs = zoo.build("gpt2")             # inputs: a dict of keyword arguments
    out = zoo.main_output(model(**inputs))        # logits, for Hugging Face models
    model = zoo.load("digits-cnn")                # a reference model with its trained weights

Three groups, one namespace:

    DEMO       cnn, gpt: small random-weight models for `fastc demo` and `fastc explain` (eval mode)
    TESTS      hand-written modules and tiny Hugging Face configs (random weights, no downloads)
               that the backend tests compile; TRAINING: those also checked in training mode
    REFERENCE  char-lm, digits-cnn, digits-vit: trained here, weights in weights/ (eval mode);
               each entry says how it trains, evaluates and is calibrated (see ReferenceModel)

Every builder is seeded, so two calls build the same weights. BatchNorm running statistics of the
random-weight models are randomized (a fresh BatchNorm has mean 0 and variance 1, which makes
folding it trivial).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import weights_io
from .data import digits, stdlib_corpus
from .metrics import classifier_metrics, lm_metrics
from .models.char_lm import CharLM, CharLMConfig
from .models.convfirst_net import ConvFirstNet
from .models.digits_cnn import DigitsCNN, DigitsCNNConfig
from .models.digits_vit import DigitsViT, DigitsViTConfig
from .models.small import MLP, AttentionBlock, ConvBN, DemoCNN, DemoGPT
from .training import TrainSettings

Inputs = dict[str, torch.Tensor]


def randomize_batchnorm(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.normal_(0, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                if m.affine:
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0, 0.2)
    return model


def _tokens(vocab: int, batch: int = 2, seq: int = 8):
    return torch.randint(0, vocab, (batch, seq))


def _image(size: int = 32, batch: int = 2):
    return torch.randn(batch, 3, size, size)


# ---- demo ------------------------------------------------------------------------------------

def _cnn(batch: int = 8):
    return randomize_batchnorm(DemoCNN()).eval(), {"x": torch.randn(batch, 3, 32, 32)}


def _gpt(batch: int = 8):
    return DemoGPT().eval(), {"ids": torch.randint(0, 256, (batch, 64))}


# ---- tests -----------------------------------------------------------------------------------

def _mlp(batch: int = 4):
    return MLP(), {"x": torch.randn(batch, 16)}


def _conv_bn(batch: int = 2):
    return randomize_batchnorm(ConvBN()), {"x": _image(16, batch)}


def _attention_block(batch: int = 2):
    return AttentionBlock(), {"x": torch.randn(batch, 8, 32)}


def _attention_block_sdpa(batch: int = 2):
    return AttentionBlock(sdpa=True), {"x": torch.randn(batch, 8, 32)}


def _gpt2(batch: int = 2):
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=32,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
    return GPT2LMHeadModel(cfg), {"input_ids": _tokens(128, batch)}


def _llama(batch: int = 2):
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, use_cache=False)
    return LlamaForCausalLM(cfg), {"input_ids": _tokens(128, batch)}


def _bert(batch: int = 2):
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     vocab_size=128, max_position_embeddings=64, num_labels=3,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids = _tokens(128, batch)
    mask = torch.ones_like(ids)
    mask[-1, 6:] = 0  # padding in the last sequence: the attention mask matters
    return BertForSequenceClassification(cfg), {"input_ids": ids, "attention_mask": mask}


def _vit(batch: int = 2):
    from transformers import ViTConfig, ViTForImageClassification
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=10, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    return ViTForImageClassification(cfg), {"pixel_values": _image(32, batch)}


def _resnet(batch: int = 2):
    from transformers import ResNetConfig, ResNetForImageClassification
    cfg = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
                       num_labels=10)
    return randomize_batchnorm(ResNetForImageClassification(cfg)), {"pixel_values": _image(32, batch)}


def _convnext(batch: int = 2):
    from transformers import ConvNextConfig, ConvNextForImageClassification
    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10, image_size=32)
    return ConvNextForImageClassification(cfg), {"pixel_values": _image(32, batch)}


def _convfirst(batch: int = 2):
    return randomize_batchnorm(ConvFirstNet()).eval(), {"x": _image(64, batch)}


def _mobilenet_v2(batch: int = 2):
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification
    cfg = MobileNetV2Config(image_size=32, depth_multiplier=0.25, num_labels=10, classifier_dropout_prob=0.0)
    return randomize_batchnorm(MobileNetV2ForImageClassification(cfg)), {"pixel_values": _image(32, batch)}


# ---- reference models: trained here -----------------------------------------------------------

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
    input_name: str                  # the forward argument the inputs are passed as
    evaluate: Callable[[nn.Module], dict]
    calibration: Callable[[nn.Module, int], torch.Tensor]  # first n training inputs, never validation
    batches: Callable[[nn.Module, int], Callable[[torch.Generator], Batch]]  # (model, size) -> sampler
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def build(self, config: dict | None = None) -> nn.Module:
        """A freshly initialized model; config overrides fields of the default config."""
        return self.make(self.config_type(**(config or {})))


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


@functools.lru_cache(maxsize=1)
def _digits() -> digits.DigitsSplit:
    return digits.load_split()


def _digits_eval(model: nn.Module) -> dict:
    split = _digits()
    return classifier_metrics(model, split.x_val, split.y_val)


def _digits_calibration(model: nn.Module, n: int) -> torch.Tensor:
    return _digits().x_train[:n]


def _digits_batches(model: nn.Module, batch: int):
    def next_batch(gen):
        split = _digits()
        idx = torch.randint(0, len(split.y_train), (batch,), generator=gen)
        return digits.augment(split.x_train[idx], gen), split.y_train[idx]
    return next_batch


REFERENCE: dict[str, ReferenceModel] = {
    "char-lm": ReferenceModel(
        name="char-lm",
        description="6-layer LLaMA-style char transformer (RMSNorm, RoPE, SwiGLU) on stdlib .py files",
        metric="bpc", higher_is_better=False, config_type=CharLMConfig,
        settings=TrainSettings(steps=500, batch=24, lr=3e-3, warmup=30, weight_decay=0.05),
        make=CharLM, input_name="tokens", evaluate=char_lm_metrics, calibration=_lm_calibration,
        batches=_lm_batches, loss=_lm_loss),
    "digits-cnn": ReferenceModel(
        name="digits-cnn",
        description="residual CNN (BasicBlock + ConvFirst blocks, BatchNorm) on 16x16 sklearn digits",
        metric="accuracy", higher_is_better=True, config_type=DigitsCNNConfig,
        settings=TrainSettings(steps=300, batch=64, lr=3e-3, warmup=30, weight_decay=0.05),
        make=DigitsCNN, input_name="x", evaluate=_digits_eval, calibration=_digits_calibration,
        batches=_digits_batches, loss=F.cross_entropy),
    "digits-vit": ReferenceModel(
        name="digits-vit",
        description="tiny ViT (4x4 patches, 4 layers, dim 64) on 16x16 sklearn digits",
        metric="accuracy", higher_is_better=True, config_type=DigitsViTConfig,
        settings=TrainSettings(steps=1200, batch=64, lr=2e-3, warmup=100, weight_decay=0.05),
        make=DigitsViT, input_name="x", evaluate=_digits_eval, calibration=_digits_calibration,
        batches=_digits_batches, loss=F.cross_entropy),
}


def reference(name: str) -> ReferenceModel:
    """The reference model called `name`: how it is built, trained, evaluated and calibrated."""
    if name not in REFERENCE:
        raise ValueError(f"unknown reference model '{name}' (valid: {', '.join(REFERENCE)})")
    return REFERENCE[name]


def load(name: str) -> nn.Module:
    """The trained reference model in eval mode, built from its sidecar config and safetensors."""
    spec = reference(name)
    record = weights_io.load_record(name) or {}
    model = spec.build(record.get("config"))
    model.load_state_dict(weights_io.load_state(name))
    return model.eval()


def _reference_builder(name: str):
    def build_reference(batch: int = 8):
        model = load(name)
        spec = REFERENCE[name]
        return model, {spec.input_name: spec.calibration(model, batch)}
    return build_reference


# ---- the zoo ---------------------------------------------------------------------------------

#: Every model by name: a builder taking `batch` (each has its own default) and returning
#: (model, inputs), inputs a dict of keyword arguments.
MODELS: dict[str, Callable[..., tuple[nn.Module, Inputs]]] = {
    "cnn": _cnn,
    "gpt": _gpt,
    "mlp": _mlp,
    "conv_bn": _conv_bn,
    "attention_block": _attention_block,
    "attention_block_sdpa": _attention_block_sdpa,
    "gpt2": _gpt2,
    "llama": _llama,
    "bert": _bert,
    "vit": _vit,
    "resnet": _resnet,
    "convnext": _convnext,
    "mobilenet_v2": _mobilenet_v2,
    "convfirst": _convfirst,
    **{name: _reference_builder(name) for name in REFERENCE},
}

#: `fastc demo` and `fastc explain` models.
DEMO = ("cnn", "gpt")
#: The models the backend tests compile (tests/test_models.py and others).
TESTS = ("mlp", "conv_bn", "attention_block", "attention_block_sdpa", "gpt2", "llama", "bert", "vit",
         "resnet", "convnext", "mobilenet_v2", "convfirst")
#: Test models also checked in training mode (forward, gradients, updated buffers).
TRAINING = ("mlp", "conv_bn", "attention_block", "attention_block_sdpa", "gpt2", "resnet")


def build(name: str, seed: int = 0, batch: int | None = None) -> tuple[nn.Module, Inputs]:
    """(model, inputs) for the model called `name`; `batch` overrides its default batch size.
    Call it as model(**inputs)."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r} (valid: {', '.join(MODELS)})")
    torch.manual_seed(seed)
    return MODELS[name]() if batch is None else MODELS[name](batch=batch)


def main_output(out) -> torch.Tensor:
    """The tensor a model's output is judged by: logits for Hugging Face models."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise TypeError(f"no main output in {type(out).__name__}")
