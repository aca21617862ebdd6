"""The CPU deformable convolution (vqfr.archs.deform) against torchvision's kernel: equal bit for
bit, in every case the TWMs can produce (sampling positions inside, on the edge of and far
outside the image, several offset groups, batches, bands of rows)."""
from __future__ import annotations

import pytest
import torch
from goldens import spy
from torchvision.ops import deform_conv2d as torchvision_deform_conv2d

import vqfr.archs.deform as deform


def _case(batch, channels, height, width, groups, seed, scale=3.0, out_channels=None):
    generator = torch.Generator().manual_seed(seed)
    out_channels = out_channels or channels
    x = torch.randn(batch, channels, height, width, generator=generator)
    offset = torch.randn(batch, 2 * groups * 9, height, width, generator=generator) * scale
    offset[:, :, :2] += 1e4            # far below the image
    offset[:, 1::2, :, :3] -= 1e4      # far left of it
    offset[:, :, -1] = torch.tensor(float(height))        # exactly at the bottom edge, row H
    offset[:, :, 3, 3] = -1.0 - 3.0    # rows landing exactly on -1
    mask = torch.rand(batch, groups * 9, height, width, generator=generator)
    weight = torch.randn(out_channels, channels, 3, 3, generator=generator) * 0.05
    bias = torch.randn(out_channels, generator=generator)
    return x, offset, weight, bias, mask


@pytest.mark.parametrize("batch,channels,height,width,groups,out_channels", [
    (1, 8, 17, 23, 1, 8),
    (2, 16, 32, 32, 4, 16),
    (3, 32, 20, 9, 4, 12),
    (1, 64, 64, 48, 4, 64),
])
@pytest.mark.parametrize("band", [1 << 10, 1 << 20])
def test_equals_torchvision_bit_for_bit(monkeypatch, batch, channels, height, width, groups,
                                        out_channels, band):
    monkeypatch.setattr(deform, "COLUMN_BAND_ELEMENTS", band)
    x, offset, weight, bias, mask = _case(batch, channels, height, width, groups, seed=band + batch,
                                          out_channels=out_channels)
    expected = torchvision_deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    with torch.inference_mode():
        got = deform._deform_conv2d_cpu(x, offset, weight, bias, 1, mask)
        dispatched = deform.deform_conv2d(x, offset, weight, bias, 1, mask)
    assert torch.equal(got, expected)
    assert torch.equal(dispatched, expected)


def test_float64_and_no_bias():
    x, offset, weight, _, mask = _case(1, 8, 12, 12, 2, seed=5)
    x, offset, weight, mask = (t.double() for t in (x, offset, weight, mask))
    expected = torchvision_deform_conv2d(x, offset, weight, None, padding=1, mask=mask)
    assert torch.equal(deform._deform_conv2d_cpu(x, offset, weight, None, 1, mask), expected)


def test_a_wrong_sampling_rule_is_caught():
    """The comparison can fail: moving every sampling position by 1e-3 pixel is visible."""
    x, offset, weight, bias, mask = _case(1, 8, 16, 16, 2, seed=7)
    expected = torchvision_deform_conv2d(x, offset, weight, bias, padding=1, mask=mask)
    got = deform._deform_conv2d_cpu(x, offset + 1e-3, weight, bias, 1, mask)
    assert not torch.equal(got, expected)
    assert (got - expected).abs().max() > 1e-4


def test_dispatch_falls_back_to_torchvision(monkeypatch):
    x, offset, weight, bias, mask = _case(1, 8, 10, 10, 2, seed=3)
    calls = spy(monkeypatch, deform, "_deform_conv2d_cpu", lambda *args: "fast")
    with torch.inference_mode():
        deform.deform_conv2d(x, offset, weight, bias, 1, mask)
    assert calls == ["fast"]
    # autograd, the official-way switch and other dtypes all take torchvision's kernel
    weight.requires_grad_(True)
    out = deform.deform_conv2d(x, offset, weight, bias, 1, mask)
    out.sum().backward()
    assert weight.grad is not None and calls == ["fast"]
    weight.requires_grad_(False)
    with deform.torchvision_kernel(), torch.inference_mode():
        deform.deform_conv2d(x, offset, weight, bias, 1, mask)
    with torch.inference_mode():
        deform.deform_conv2d(x.half(), offset.half(), weight.half(), bias.half(), 1, mask.half())
    assert calls == ["fast"]
    assert not deform._force_torchvision
