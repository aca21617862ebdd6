"""LPIPS (VGG, v0.1) as TencentARC/VQFR ``metric_paper/calculate_lpips.py`` computes it.

Official protocol: ``lpips.LPIPS(net='vgg')`` (version 0.1, lpips=True, spatial=False), linear heads
from the ``lpips`` wheel, backbone = torchvision's ImageNet VGG16 (``vgg16-397923af.pth``). Images
are RGB scaled to [-1, 1] (``normalize(mean=0.5, std=0.5)``), called as ``loss(restored, gt)`` with
``normalize=False``; the reported value is the mean over pairs.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, ClassVar

import torch

from vqfr.metrics.base import Metric, MetricResult, check_images, ordered_rows, require_side
from vqfr.metrics.color import u8_to_minus1_1
from vqfr.metrics.weights import Weights, metric_state_dict

# the smallest side whose feature map survives the four 2x2 max-poolings before relu5_3
MIN_SIDE = 16

# torchvision ``vgg16().features`` index ranges held by lpips' ``net.slice1`` ... ``net.slice5``.
_VGG_SLICES = ((1, range(4)), (2, range(4, 9)), (3, range(9, 16)), (4, range(16, 23)),
               (5, range(23, 30)))


def vgg16_to_lpips_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map a torchvision VGG16 state dict (``features.N.weight`` as in ``vgg16-397923af.pth``,
    classifier keys ignored, or the bare ``N.weight`` of ``vgg16().features``) onto lpips' keys
    ``net.slice{s}.N.weight``. Every feature tensor must find a place."""
    slice_of = {i: s for s, indices in _VGG_SLICES for i in indices}
    mapped = {}
    for key, tensor in state_dict.items():
        if key.startswith("classifier."):
            continue
        bare = key.removeprefix("features.")
        index, _, param = bare.partition(".")
        if not index.isdigit() or int(index) not in slice_of or param not in ("weight", "bias"):
            raise KeyError(f"unexpected key {key!r} in the VGG16 weights (expected torchvision's "
                           "vgg16 layout: features.N.weight / features.N.bias)")
        mapped[f"net.slice{slice_of[int(index)]}.{bare}"] = tensor
    return mapped


def load_lpips_vgg(weights: Weights = None,
                   assets: Mapping[str, str] | None = None) -> torch.nn.Module:
    """``lpips.LPIPS`` (VGG, v0.1) with its heads from the wheel and the given VGG16 backbone.
    ``pnet_rand=True`` keeps torchvision from downloading ImageNet weights; ours replace them."""
    import lpips

    from vqfr.zoo.checkpoint import CheckpointError, load_into

    state_dict, origin = metric_state_dict(LPIPS.asset, weights, assets)
    try:
        backbone = vgg16_to_lpips_keys(state_dict)
    except KeyError as exc:
        raise CheckpointError(f"{origin} is not VGG16 weights: {exc.args[0]}") from None
    with warnings.catch_warnings():  # lpips still calls torchvision's deprecated pretrained=
        warnings.simplefilter("ignore", UserWarning)
        model = lpips.LPIPS(net="vgg", version="0.1", lpips=True, spatial=False, pretrained=True,
                            pnet_rand=True, verbose=False)
    # the backbone strictly (keys and shapes); the linear heads come with the lpips wheel
    load_into(model.net, {k.removeprefix("net."): v for k, v in backbone.items()}, origin)
    return model.eval().requires_grad_(False)


class LPIPS(Metric):
    name: ClassVar[str] = "lpips"
    lower_is_better: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = True
    asset: ClassVar[str] = "lpips-vgg16"

    def __init__(self, weights: Weights = None,
                 device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 assets: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.dtype = dtype
        self.net = load_lpips_vgg(weights, assets).to(self.device, dtype)
        self.add_state("index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("values", torch.zeros(0, dtype=torch.float64), reduce="cat")
        # (uint8 reference batch, its features): the last one seen, see distances()
        self._reference_memo: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    @torch.inference_mode()
    def distances(self, restored: torch.Tensor, reference: torch.Tensor,
                  per_layer: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Per-pair LPIPS [B] (and the per-layer terms [B, 5] with ``per_layer=True``).

        ``lpips.LPIPS.forward`` split in two, the same operations in the same order: the
        reference side (half the work) is kept for the last reference batch, so the methods of a
        run, which go through the dataset batch by batch in lockstep, compute it once per batch.
        """
        from lpips.lpips import spatial_average

        check_images(restored, reference, self.name)
        require_side(self.name, *restored.shape[-2:], MIN_SIDE, " (VGG16's four 2x2 poolings)")
        reference_features = self._reference_features(reference)
        restored_features = self._features(u8_to_minus1_1(restored.to(self.device), self.dtype))
        net = self.net
        layers = []
        for kk in range(net.L):
            diff = (restored_features[kk] - reference_features[kk]) ** 2
            layers.append(spatial_average(net.lins[kk](diff), keepdim=True))
        value = 0                       # as lpips sums them: 0 + layer 0 + layer 1 ...
        for layer in layers:
            value += layer
        value = value.flatten(1).squeeze(1)
        if per_layer:
            return value, torch.stack([t.flatten(1).squeeze(1) for t in layers], dim=1)
        return value

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised VGG features of images in [-1, 1] (lpips' scaling layer first)."""
        import lpips

        outputs = self.net.net.forward(self.net.scaling_layer(images))
        return [lpips.normalize_tensor(outputs[kk]) for kk in range(self.net.L)]

    def _reference_features(self, reference: torch.Tensor) -> list[torch.Tensor]:
        memo = self._reference_memo
        if memo is not None and memo[0].shape == reference.shape and torch.equal(
                memo[0], reference.to(memo[0].device)):
            return memo[1]
        features = self._features(u8_to_minus1_1(reference.to(self.device), self.dtype))
        self._reference_memo = (reference.detach().clone(), features)
        return features

    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> None:
        if reference is None:
            raise ValueError("lpips needs the reference (ground-truth) images")
        if index is None:
            raise ValueError("lpips: update() needs the global image indices")
        values = self.distances(restored, reference)
        self.index = torch.cat([self.index, index.detach().cpu().long()])
        self.values = torch.cat([self.values, values.detach().double().cpu()])

    def compute(self) -> MetricResult:
        index, values = ordered_rows(self.index, self.values)
        per_image = dict(zip(index.tolist(), values.tolist()))
        return MetricResult(value=float(values.mean()) if len(values) else float("nan"),
                            per_image=per_image, extra={"count": len(values)})

    def options(self) -> dict[str, Any]:
        return {"net": "vgg", "version": "0.1", "input_range": "[-1,1]", "normalize": False,
                "dtype": str(self.dtype).removeprefix("torch.")}
