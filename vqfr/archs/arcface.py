"""ArcFace ResNet-Face-18 (``resnet_face18(use_se=False)`` of ronghuaiyang/arcface-pytorch), the
identity network behind the Deg. metric (TencentARC/VQFR ``metric_paper/calculate_cos_dist.py``,
checkpoint ``resnet18_110.pth``). Same modules and state-dict keys as GFPGAN's ``ResNetArcFace``
(without the ``module.`` prefix of the DataParallel checkpoint).

Input: B x 1 x 128 x 128 grey in [-1, 1]; output: the raw 512-d ``bn5`` embedding (not normalised).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)


class IRBlock(nn.Module):
    """Improved residual block: BN -> conv -> BN -> PReLU -> conv(stride) -> BN, + shortcut,
    PReLU. One PReLU module (one slope) serves both activations, as in the official code."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.bn0 = nn.BatchNorm2d(in_channels)
        self.conv1 = conv3x3(in_channels, in_channels)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.prelu = nn.PReLU()
        self.conv2 = conv3x3(in_channels, channels, stride)
        self.bn2 = nn.BatchNorm2d(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.prelu(self.bn1(self.conv1(self.bn0(x))))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.prelu(out + shortcut)


class ResNetArcFace(nn.Module):
    """``ResNetArcFace(block='IRBlock', layers=(2, 2, 2, 2), use_se=False)``: 128 -> maxpool 64 ->
    stages at 64, 32, 16, 8 px -> BN -> (dropout, inactive in eval) -> fc5 -> BN1d."""

    def __init__(self, layers: Sequence[int] = (2, 2, 2, 2), embedding_dim: int = 512) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 64, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.prelu = nn.PReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=2, stride=2)
        widths = (64, 128, 256, 512)
        in_channels = 64
        for stage, (width, depth) in enumerate(zip(widths, layers), start=1):
            stride = 1 if stage == 1 else 2
            blocks = [IRBlock(in_channels, width, stride)]
            blocks += [IRBlock(width, width) for _ in range(1, depth)]
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
            in_channels = width
        self.bn4 = nn.BatchNorm2d(512)
        self.dropout = nn.Dropout()
        self.fc5 = nn.Linear(512 * 8 * 8, embedding_dim)
        self.bn5 = nn.BatchNorm1d(embedding_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.prelu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = self.dropout(self.bn4(x))
        return self.bn5(self.fc5(x.flatten(1)))
