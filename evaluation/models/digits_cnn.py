"""A small residual CNN for the 16x16 digits, with BatchNorm and ConvFirst-style blocks.

Layout: stem (3x3 conv, BN, ReLU) -> BasicBlock -> ConvFirstBlock at 16x16, a stride-2 3x3 conv to
8x8, two ConvFirstBlocks, global average pooling and a linear classifier.
"""
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class DigitsCNNConfig:
    width: int = 32
    groups: int = 8
    expand: int = 4
    n_classes: int = 10

    def to_dict(self) -> dict:
        return asdict(self)


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout))


class BasicBlock(nn.Module):
    """ResNet basic block: 3x3 conv-BN-ReLU, 3x3 conv-BN, add the input, ReLU."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = conv_bn(channels, channels, 3)
        self.conv2 = conv_bn(channels, channels, 3)

    def forward(self, x):
        return F.relu(x + self.conv2(F.relu(self.conv1(x))))


class ConvFirstBlock(nn.Module):
    """Grouped 3x3 conv-BN, 1x1 expand (x expand)-BN-GELU, 1x1 project-BN, add the input."""

    def __init__(self, channels: int, groups: int, expand: int):
        super().__init__()
        self.spatial = conv_bn(channels, channels, 3, groups=groups)
        self.expand = conv_bn(channels, channels * expand, 1)
        self.project = conv_bn(channels * expand, channels, 1)

    def forward(self, x):
        return x + self.project(F.gelu(self.expand(self.spatial(x))))


class DigitsCNN(nn.Module):
    """Maps images (batch, 1, 16, 16) to class logits (batch, 10)."""

    def __init__(self, cfg: DigitsCNNConfig = DigitsCNNConfig()):
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        self.stem = conv_bn(1, w, 3)
        self.stage1 = nn.Sequential(BasicBlock(w), ConvFirstBlock(w, cfg.groups, cfg.expand))
        self.down = conv_bn(w, 2 * w, 3, stride=2)
        self.stage2 = nn.Sequential(ConvFirstBlock(2 * w, cfg.groups, cfg.expand),
                                    ConvFirstBlock(2 * w, cfg.groups, cfg.expand))
        self.classifier = nn.Linear(2 * w, cfg.n_classes)

    def forward(self, x):
        x = self.stage1(F.relu(self.stem(x)))
        x = self.stage2(F.relu(self.down(x)))
        return self.classifier(x.mean(dim=(2, 3)))
