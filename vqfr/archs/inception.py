"""The FID Inception network: pytorch-fid's port of TensorFlow's inception-2015-12-05 graph, as
TencentARC/VQFR ``vqfr/archs/inception.py`` uses it for FID.

torchvision's InceptionV3 with four kinds of patched blocks (the TF graph differs from
torchvision's): the average pools of Mixed_5b/c/d (A), Mixed_6b-e (C) and Mixed_7b (E) exclude
the padding (``count_include_pad=False``), and Mixed_7c pools with a 3x3 *max* pool. 1008
classes; only the 2048-d pool3 features are used. The state dict has exactly the layout of
``pt_inception-2015-12-05-6726825d.pth`` (loaded with strict=True).

Input path of the official FID script: RGB in [-1, 1] (``normalize(mean=0.5, std=0.5)`` of
x/255), bilinear resize to 299x299 (align_corners=False, no antialias), no further
normalisation.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.inception import (BasicConv2d, InceptionA, InceptionB, InceptionC,
                                          InceptionD, InceptionE)

INPUT_SIZE = 299
FEATURE_DIM = 2048


def _avg_pool_without_padding(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


class FIDInceptionA(InceptionA):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        branch_pool = self.branch_pool(_avg_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch5x5, branch3x3dbl, branch_pool], 1)


class FIDInceptionC(InceptionC):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for layer in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3,
                      self.branch7x7dbl_4, self.branch7x7dbl_5):
            branch7x7dbl = layer(branch7x7dbl)
        branch_pool = self.branch_pool(_avg_pool_without_padding(x))
        return torch.cat([self.branch1x1(x), branch7x7, branch7x7dbl, branch_pool], 1)


class FIDInceptionE(InceptionE):
    """Mixed_7b (average pool without padding) and Mixed_7c (``max_pool=True``)."""

    def __init__(self, in_channels: int, max_pool: bool) -> None:
        super().__init__(in_channels)
        self.max_pool = max_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat([self.branch3x3dbl_3a(branch3x3dbl),
                                  self.branch3x3dbl_3b(branch3x3dbl)], 1)
        if self.max_pool:
            pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            pooled = _avg_pool_without_padding(x)
        return torch.cat([self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(pooled)],
                         1)


class FIDInceptionV3(nn.Module):
    """pool3 features of the FID Inception. ``forward(x)`` takes [-1, 1] RGB of any size (resized
    to 299 as the official code) and returns B x 2048; ``blocks(x)`` returns the outputs of the
    four pytorch-fid blocks (64, 192, 768, 2048 channels; the last is pool3, B x 2048 x 1 x 1)."""

    def __init__(self, num_classes: int = 1008) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = FIDInceptionA(192, pool_features=32)
        self.Mixed_5c = FIDInceptionA(256, pool_features=64)
        self.Mixed_5d = FIDInceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = FIDInceptionC(768, channels_7x7=128)
        self.Mixed_6c = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6d = FIDInceptionC(768, channels_7x7=160)
        self.Mixed_6e = FIDInceptionC(768, channels_7x7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = FIDInceptionE(1280, max_pool=False)
        self.Mixed_7c = FIDInceptionE(2048, max_pool=True)
        self.fc = nn.Linear(FEATURE_DIM, num_classes)  # in the checkpoint; unused for FID

    @staticmethod
    def resize_input(x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear",
                             align_corners=False)

    def blocks(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.resize_input(x)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        block0 = F.max_pool2d(x, kernel_size=3, stride=2)
        block1 = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(block0)), kernel_size=3,
                              stride=2)
        x = block1
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                     "Mixed_6d", "Mixed_6e"):
            x = getattr(self, name)(x)
        block2 = x
        x = self.Mixed_7c(self.Mixed_7b(self.Mixed_7a(block2)))
        return [block0, block1, block2, F.adaptive_avg_pool2d(x, (1, 1))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)[-1].flatten(1)
