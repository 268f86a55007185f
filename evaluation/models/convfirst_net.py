"""A ConvFirst network (after Lavin, "On the Efficiency of Convolutional Neural Networks"): stages
of ConvFirst blocks (depthwise 3x3 conv-BN, 1x1 expansion x4-BN-GELU, 1x1 projection-BN, the
input added), a stride-2 3x3 conv between stages; the network fastc's block fusion is measured on.

Layout at the default sizes (64 x 64 images): stem (3x3 stride 2, BN, ReLU) to 32 x 32 x 32,
two blocks; 64 channels at 16 x 16, two blocks; 128 at 8 x 8, two blocks; mean pool; linear.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .digits_cnn import ConvFirstBlock, conv_bn


class ConvFirstNet(nn.Module):
    def __init__(self, widths=(32, 64, 128), depths=(2, 2, 2), expand: int = 4, n_classes: int = 10):
        super().__init__()
        self.stem = conv_bn(3, widths[0], 3, stride=2)
        stages = []
        for i, (w, d) in enumerate(zip(widths, depths)):
            down = [conv_bn(widths[i - 1], w, 3, stride=2), nn.ReLU()] if i else []
            stages.append(nn.Sequential(*down, *[ConvFirstBlock(w, w, expand) for _ in range(d)]))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(widths[-1], n_classes)

    def forward(self, x):
        x = self.stages(F.relu(self.stem(x)))
        return self.head(x.mean(dim=(2, 3)))
