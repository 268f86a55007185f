"""Tiny models for the backend tests: Hugging Face architectures with random weights from small
configs (no downloads), and hand-written modules.

    model, inputs = model_zoo.build("gpt2")     # inputs: a dict of keyword arguments
    out = model_zoo.main_output(model(**inputs))

Every builder is seeded, so two calls build the same weights. BatchNorm running statistics are
randomized (a fresh BatchNorm has mean 0 and variance 1, which makes folding it trivial).
"""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

#: Rows (model, check, max abs error) that the tests add; tests/conftest.py prints them.
ERROR_TABLE: list[tuple[str, str, float]] = []


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(16, 64), nn.Linear(64, 64), nn.Linear(64, 10)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.gelu(self.fc1(x)))))


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.conv2, self.bn2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class AttentionBlock(nn.Module):
    """A pre-norm transformer block with causal self-attention written out by hand, or through
    F.scaled_dot_product_attention (`sdpa=True`)."""

    def __init__(self, dim: int = 32, heads: int = 4, sdpa: bool = False):
        super().__init__()
        self.heads, self.sdpa = heads, sdpa
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.up, self.down = nn.Linear(dim, 4 * dim), nn.Linear(4 * dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).split(d, dim=-1)
        q, k, v = (z.reshape(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            y = scores.masked_fill(~causal, float("-inf")).softmax(dim=-1) @ v
        y = y.transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.down(F.gelu(self.up(self.norm2(x))))


def randomize_batchnorm(model: nn.Module):
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


def _mlp():
    return MLP(), {"x": torch.randn(4, 16)}


def _conv_bn():
    return randomize_batchnorm(ConvBN()), {"x": _image(16)}


def _attention_block():
    return AttentionBlock(), {"x": torch.randn(2, 8, 32)}


def _attention_block_sdpa():
    return AttentionBlock(sdpa=True), {"x": torch.randn(2, 8, 32)}


def _gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel
    cfg = GPT2Config(n_layer=2, n_embd=32, n_head=2, vocab_size=128, n_positions=32,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False)
    return GPT2LMHeadModel(cfg), {"input_ids": _tokens(128)}


def _llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    cfg = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, use_cache=False)
    return LlamaForCausalLM(cfg), {"input_ids": _tokens(128)}


def _bert():
    from transformers import BertConfig, BertForSequenceClassification
    cfg = BertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                     vocab_size=128, max_position_embeddings=64, num_labels=3,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    ids = _tokens(128)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding in the second sequence: the attention mask matters
    return BertForSequenceClassification(cfg), {"input_ids": ids, "attention_mask": mask}


def _vit():
    from transformers import ViTConfig, ViTForImageClassification
    cfg = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                    intermediate_size=64, num_labels=10, hidden_dropout_prob=0.0,
                    attention_probs_dropout_prob=0.0)
    return ViTForImageClassification(cfg), {"pixel_values": _image(32)}


def _resnet():
    from transformers import ResNetConfig, ResNetForImageClassification
    cfg = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
                       num_labels=10)
    return randomize_batchnorm(ResNetForImageClassification(cfg)), {"pixel_values": _image(32)}


def _convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification
    cfg = ConvNextConfig(num_stages=2, hidden_sizes=[16, 32], depths=[1, 1], num_labels=10, image_size=32)
    return ConvNextForImageClassification(cfg), {"pixel_values": _image(32)}


def _mobilenet_v2():
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification
    cfg = MobileNetV2Config(image_size=32, depth_multiplier=0.25, num_labels=10, classifier_dropout_prob=0.0)
    return randomize_batchnorm(MobileNetV2ForImageClassification(cfg)), {"pixel_values": _image(32)}


BUILDERS = {
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
}

#: Models also checked in training mode (forward, gradients, updated buffers).
TRAINING = ["mlp", "conv_bn", "attention_block", "attention_block_sdpa", "gpt2", "resnet"]


def build(name: str, seed: int = 0) -> tuple[nn.Module, dict]:
    torch.manual_seed(seed)
    model, inputs = BUILDERS[name]()
    return model, inputs


def main_output(out) -> torch.Tensor:
    """The tensor a model's output is judged by: logits for Hugging Face models."""
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if hasattr(out, "last_hidden_state"):
        return out.last_hidden_state
    raise TypeError(f"no main output in {type(out).__name__}")
