"""AWing FAN: the face-alignment network behind the LMD metric (Wang et al., "Adaptive Wing Loss
for Robust Face Alignment via Heatmap Regression", ICCV 2019), as TencentARC/VQFR
``vqfr/archs/awing_arch.py`` builds it for ``metric_paper/calculate_landmark_distance.py``
(checkpoint ``alignment_WFLW_4HG.pth``, weights under ``state_dict``; facexlib's
``awing_arch.FAN(num_modules=4, num_landmarks=98)`` is the same network).

Four stacked hourglasses (depth 4, 256 features) on a 256 x 256 RGB input in [0, 1]. Every stack
outputs 64 x 64 heatmaps for the 98 WFLW landmarks plus one boundary channel (index 98); the
boundary channel of stack i masks the coordinate channels fed to hourglass i+1 (CoordConv).
Module names and registration order are the official ones, so ``state_dict()`` has the
checkpoint's 1137 keys in its order.
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from vqfr.precision import precision

INPUT_SIZE = 256
HEATMAP_SIZE = 64
NUM_LANDMARKS = 98
BOUNDARY_THRESHOLD = 0.05   # strict ">": clamp(boundary, 0, 1) > 0.05


@contextlib.contextmanager
def ieee_fp32_convolutions(device: torch.device):
    """Full float32 on CUDA while the block runs (no TF32 for convolutions or matrix products),
    the previous setting restored after; nothing changes off CUDA. PyTorch lets cuDNN use TF32 by default, which moves the heatmaps by ~1.6e-3
    relative and flips landmark argmaxes (reference README, AWing FAN "GPU"). Set through
    :func:`vqfr.precision.precision`, whatever the run's own policy: one flag API for the whole
    suite (torch refuses to read the legacy flags once the two APIs were mixed)."""
    if device.type != "cuda":
        yield
        return
    with precision("exact"):
        yield


class FAN(nn.Module):
    """``FAN(num_modules=4, end_relu=False, gray_scale=False, num_landmarks=98)``.

    ``forward(x)``: x is B x 3 x 256 x 256 RGB in [0, 1]; returns ``(outputs, coord_channels)``
    as the official forward does: ``outputs[i]`` the B x 99 x 64 x 64 heatmaps of stack i (no
    ReLU), ``coord_channels[i]`` the last two channels the CoordConv of hourglass i appended
    ((yy, rr) for hourglass 0, the boundary-masked (xx, yy) for the others)."""

    def __init__(self, num_modules: int = 4, num_landmarks: int = NUM_LANDMARKS) -> None:
        super().__init__()
        self.num_modules = num_modules
        self.num_landmarks = num_landmarks
        self.conv1 = CoordConv(INPUT_SIZE, 3, 64, kernel_size=7, stride=2, padding=3)
        self.bn1 = nn.BatchNorm2d(64)
        self.conv2 = ConvBlock(64, 128)
        self.conv3 = ConvBlock(128, 128)
        self.conv4 = ConvBlock(128, 256)
        channels = num_landmarks + 1   # + the boundary heatmap
        for i in range(num_modules):
            self.add_module(f"m{i}", HourGlass(depth=4, first=i == 0))
            self.add_module(f"top_m_{i}", ConvBlock(256, 256))
            self.add_module(f"conv_last{i}", nn.Conv2d(256, 256, 1))
            self.add_module(f"bn_end{i}", nn.BatchNorm2d(256))
            self.add_module(f"l{i}", nn.Conv2d(256, channels, 1))
            if i < num_modules - 1:
                self.add_module(f"bl{i}", nn.Conv2d(256, 256, 1))
                self.add_module(f"al{i}", nn.Conv2d(channels, 256, 1))

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        with ieee_fp32_convolutions(x.device):
            x, _ = self.conv1(x)
            x = F.relu(self.bn1(x))
            x = F.avg_pool2d(self.conv2(x), 2, stride=2)
            previous = self.conv4(self.conv3(x))
            outputs, coord_channels = [], []
            heatmaps = None
            for i in range(self.num_modules):
                hg, coords = getattr(self, f"m{i}")(previous, heatmaps)
                ll = getattr(self, f"top_m_{i}")(hg)
                ll = F.relu(getattr(self, f"bn_end{i}")(getattr(self, f"conv_last{i}")(ll)))
                heatmaps = getattr(self, f"l{i}")(ll)
                outputs.append(heatmaps)
                coord_channels.append(coords)
                if i < self.num_modules - 1:   # the stacks accumulate
                    previous = previous + getattr(self, f"bl{i}")(ll) + getattr(self, f"al{i}")(
                        heatmaps)
        return outputs, coord_channels

    def landmark_heatmaps(self, x: torch.Tensor) -> torch.Tensor:
        """What the LMD protocol reads: the last stack's B x 98 x 64 x 64 landmark heatmaps
        (boundary channel dropped)."""
        return self(x)[0][-1][:, :self.num_landmarks]


class HourGlass(nn.Module):
    """CoordConv (1x1) then a depth-4 hourglass of ``ConvBlock(256, 256)``s: at each level
    ``b1(x) + up2(b3(inner(b2(avgpool2(x)))))``, ``inner`` being the next level or, at the
    bottom, ``b2_plus``; nearest-neighbour x2 upsampling."""

    def __init__(self, depth: int = 4, features: int = 256, first: bool = False) -> None:
        super().__init__()
        self.depth = depth
        self.coordconv = CoordConv(HEATMAP_SIZE, features, features, kernel_size=1,
                                   with_boundary=not first)
        self._add_level(depth, features)

    def _add_level(self, level: int, features: int) -> None:
        # registration order = the checkpoint's key order: b1_4, b2_4, b1_3, ..., b2_plus_1,
        # b3_1, ..., b3_4
        self.add_module(f"b1_{level}", ConvBlock(features, features))
        self.add_module(f"b2_{level}", ConvBlock(features, features))
        if level > 1:
            self._add_level(level - 1, features)
        else:
            self.add_module(f"b2_plus_{level}", ConvBlock(features, features))
        self.add_module(f"b3_{level}", ConvBlock(features, features))

    def _level(self, level: int, x: torch.Tensor) -> torch.Tensor:
        up = getattr(self, f"b1_{level}")(x)
        low = getattr(self, f"b2_{level}")(F.avg_pool2d(x, 2, stride=2))
        low = self._level(level - 1, low) if level > 1 else getattr(self, f"b2_plus_{level}")(low)
        low = getattr(self, f"b3_{level}")(low)
        return up + F.interpolate(low, scale_factor=2, mode="nearest")

    def forward(self, x: torch.Tensor,
                heatmaps: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        x, coords = self.coordconv(x, heatmaps)
        return self._level(self.depth, x), coords


class ConvBlock(nn.Module):
    """Pre-activation block: three BN -> ReLU -> 3x3 conv steps in a chain (out/2, out/4, out/4
    channels) concatenated, plus the input (through BN -> ReLU -> 1x1 conv when in != out)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, half, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(half)
        self.conv2 = nn.Conv2d(half, quarter, 3, padding=1, bias=False)
        self.bn3 = nn.BatchNorm2d(quarter)
        self.conv3 = nn.Conv2d(quarter, quarter, 3, padding=1, bias=False)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(nn.BatchNorm2d(in_channels), nn.ReLU(),
                                            nn.Conv2d(in_channels, out_channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out1 = self.conv1(F.relu(self.bn1(x)))
        out2 = self.conv2(F.relu(self.bn2(out1)))
        out3 = self.conv3(F.relu(self.bn3(out2)))
        residual = x if self.downsample is None else self.downsample(x)
        return torch.cat((out1, out2, out3), 1) + residual


class CoordConv(nn.Module):
    """Convolution over the input plus coordinate channels (official ``CoordConvTh`` with
    ``with_r=True``): "xx", which varies along the rows (H), "yy" along the columns (W), both
    i / (n - 1) * 2 - 1, and rr = sqrt(xx^2 + yy^2) / max; with ``with_boundary`` and a previous
    stack's heatmaps, also xx and yy masked to where clamp(boundary channel, 0, 1) > 0.05.
    Returns (conv output, the last two appended channels)."""

    def __init__(self, size: int, in_channels: int, out_channels: int, kernel_size: int,
                 stride: int = 1, padding: int = 0, with_boundary: bool = False) -> None:
        super().__init__()
        self.size = size
        self.with_boundary = with_boundary
        extra = 3 + (2 if with_boundary else 0)
        self.conv = nn.Conv2d(in_channels + extra, out_channels, kernel_size, stride=stride,
                              padding=padding)

    def coordinates(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(xx, yy, rr), each 1 x 1 x n x n float32, computed as the official code does."""
        ramp = torch.arange(self.size, dtype=torch.float32, device=device) / (self.size - 1)
        ramp = ramp * 2 - 1
        xx = ramp.view(1, 1, -1, 1).expand(1, 1, self.size, self.size)
        yy = ramp.view(1, 1, 1, -1).expand(1, 1, self.size, self.size)
        rr = torch.sqrt(torch.pow(xx, 2) + torch.pow(yy, 2))
        return xx, yy, rr / torch.max(rr)

    def forward(self, x: torch.Tensor,
                heatmaps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        batch = x.shape[0]
        xx, yy, rr = (c.expand(batch, -1, -1, -1).to(x.dtype) for c in self.coordinates(x.device))
        channels = [x, xx, yy, rr]
        if self.with_boundary and heatmaps is not None:
            mask = torch.clamp(heatmaps[:, -1:], 0.0, 1.0) > BOUNDARY_THRESHOLD
            zero = torch.zeros_like(xx)
            channels += [torch.where(mask, xx, zero), torch.where(mask, yy, zero)]
        stacked = torch.cat(channels, dim=1)
        return self.conv(stacked), stacked[:, -2:]
