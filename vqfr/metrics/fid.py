"""FID as TencentARC/VQFR ``metric_paper/calculate_fid_folder.py`` computes it.

Protocol: pool3 features of the FID Inception (``vqfr.archs.inception.FIDInceptionV3``) of every
restored image (RGB -> [-1, 1] -> bilinear 299x299); mu = ``np.mean(features, 0)`` (float32,
as the features), sigma = ``np.cov(features, rowvar=False)`` (float64); Fréchet distance to the
reference statistics, by default FFHQ-512 (``inception_FFHQ_512.pth``: a torch-saved dict of
numpy arrays ``{'name', 'size', 'mean', 'cov'}``), not the ground-truth folder. ``reference``
may instead name another statistics file, a folder of images (its statistics are computed
once, images in sorted name order) or ``"gt"``: the reference images given to ``update``.

States: float32 feature rows with their global index (``reduce="cat"``), turned into statistics
at ``compute()`` in index order with the official numpy calls. This is the one choice that both
reproduces the official numbers bit for bit (a float32 mean accumulated row by row; float64
sufficient statistics cannot give it) and makes any sharding merge to exactly the
single-process result (sums merged across processes would depend on the shard order in their
last bits). The price is 8 KiB per image (24 MiB for CelebA-Test's 3000 images). A run also
writes these rows (``bootstrap_rows()``) as numpy files for the bootstrap intervals of
``vqfr.stats``.

FID is biased roughly in proportion to 1/N: below 2048 images the covariance is singular and
values are comparable only at equal N. ``compute()`` warns then and records N in ``extra``.
"""
from __future__ import annotations

import math
import warnings
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from vqfr.errors import VqfrError
from vqfr.metrics.base import Metric, MetricResult, check_images, ordered_rows, read_npz
from vqfr.metrics.color import u8_to_minus1_1
from vqfr.metrics.frechet import frechet_distance
from vqfr.metrics.weights import Weights, metric_state_dict

SMALL_SAMPLE = 2048  # feature dimension: below it the sample covariance is singular


def load_fid_inception(weights: Weights = None,
                       assets: Mapping[str, str] | None = None) -> torch.nn.Module:
    """FIDInceptionV3 in eval mode with ``pt_inception-2015-12-05-6726825d.pth`` (or the given
    state dict / file), loaded strictly."""
    from vqfr.archs.inception import FIDInceptionV3

    from vqfr.zoo.checkpoint import load_into

    model = FIDInceptionV3()
    load_into(model, *metric_state_dict(FID.asset, weights, assets))
    return model.eval().requires_grad_(False)


_SHARED_NETS: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def shared_fid_inception(weights: Weights = None, assets: Mapping[str, str] | None = None,
                         device: str | torch.device = "cpu") -> torch.nn.Module:
    """One FID Inception per (weights, device), shared by FID and KID: inside a
    ``MetricCollection`` a batch's features are then computed once for both."""
    if isinstance(weights, Mapping):
        source: Any = id(weights)
    elif weights is not None:
        source = str(Path(weights).resolve())
    else:
        source = tuple(sorted((k, str(v)) for k, v in (assets or {}).items()))
    key = (source, str(torch.device(device)))
    net = _SHARED_NETS.get(key)
    if net is None:
        net = load_fid_inception(weights, assets).to(device)
        net.weights_source = weights   # a state dict given in memory stays referenced
        _SHARED_NETS[key] = net
    return net


def load_fid_stats(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(mean, cov) from an official stats file (torch-saved ``{'mean', 'cov', ...}`` of numpy
    arrays), loaded with ``weights_only=True`` and only numpy's array globals allowed, or from an
    ``.npz`` with ``mean``/``cov`` (or pytorch-fid's ``mu``/``sigma``)."""
    path = Path(path)
    if path.suffix == ".npz":
        stats = read_npz(path, "FID statistics")
        stats.setdefault("mean", stats.get("mu"))
        stats.setdefault("cov", stats.get("sigma"))
    else:
        from vqfr.zoo.checkpoint import CheckpointError, load_checkpoint_file

        try:
            stats = load_checkpoint_file(path, allow_numpy=True)
        except CheckpointError as exc:
            raise VqfrError(
                f"{path}: cannot be read as FID statistics without running arbitrary pickled "
                f"code ({str(exc).splitlines()[0]}). Expected a "
                "torch.save'd dict {'mean', 'cov'} of numpy arrays (official format, e.g. "
                "inception_FFHQ_512.pth, or `vqfr-eval fid-stats`), or an .npz with mean/cov."
            ) from None
    if not isinstance(stats, Mapping) or stats.get("mean") is None or stats.get("cov") is None:
        raise VqfrError(f"{path}: FID statistics need 'mean' and 'cov' entries")
    mean, cov = (v.numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
                 for v in (stats["mean"], stats["cov"]))
    if mean.ndim != 1 or cov.shape != (mean.size, mean.size):
        raise VqfrError(f"{path}: mean {mean.shape} and cov {cov.shape} do not fit together")
    return mean, cov


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The official statistics of N x 2048 float32 features: float32 mean, float64 covariance."""
    return np.mean(features, axis=0), np.cov(features, rowvar=False)


class FID(Metric):
    name: ClassVar[str] = "fid"
    lower_is_better: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = False
    asset: ClassVar[str] = "fid-inception"
    stats_asset: ClassVar[str] = "fid-stats-ffhq512"

    @classmethod
    def required_assets(cls, options: dict[str, Any]) -> tuple[str, ...]:
        return (cls.asset,) + ((cls.stats_asset,) if options.get("reference") is None else ())

    def __init__(self, reference: str | Path | None = None,
                 weights: Weights = None,
                 device: str | torch.device = "cpu",
                 assets: Mapping[str, str] | None = None,
                 batch_size: int = 16,
                 model: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        if reference is None:
            from vqfr.zoo import resolve_asset

            reference = resolve_asset(self.stats_asset, assets).path
        self.reference = "gt" if reference == "gt" else Path(reference)
        if self.reference != "gt" and not self.reference.exists():
            raise VqfrError(f"FID reference {self.reference} does not exist (expected a "
                            "statistics file, a folder of images or 'gt')")
        self._ref_stats: tuple[np.ndarray, np.ndarray, int | None] | None = None
        self._ref_features: np.ndarray | None = None     # a folder's, computed once
        if isinstance(self.reference, Path) and self.reference.is_file():
            self._ref_stats = (*load_fid_stats(self.reference), None)
        self.net = (model.to(self.device) if model is not None
                    else shared_fid_inception(weights, assets, self.device))
        self.add_state("index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("features", torch.zeros(0, 2048, dtype=torch.float32), reduce="cat")
        self.add_state("ref_index", torch.zeros(0, dtype=torch.long), reduce="cat")
        self.add_state("ref_features", torch.zeros(0, 2048, dtype=torch.float32), reduce="cat")

    @torch.inference_mode()
    def extract(self, images: torch.Tensor) -> torch.Tensor:
        """pool3 features (B x 2048, float32, on CPU) of uint8 RGB images."""
        check_images(images, None, self.name)
        return self.net(u8_to_minus1_1(images.to(self.device))).float().cpu()

    def _batch_features(self, images: torch.Tensor, role: str, cache: dict | None
                        ) -> torch.Tensor:
        """Features of this batch's restored or reference images; with ``cache`` (one dict per
        batch, from MetricCollection) computed once for every metric sharing the network."""
        key = ("fid-inception-pool3", id(self.net), role)
        if cache is not None and key in cache:
            return cache[key]
        features = self.extract(images)
        if cache is not None:
            cache[key] = features
        return features

    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None, cache: dict | None = None) -> None:
        if index is None:
            raise ValueError(f"{self.name}: update() needs the global image indices")
        index = index.detach().cpu().long()
        self.index = torch.cat([self.index, index])
        self.features = torch.cat([self.features,
                                   self._batch_features(restored, "restored", cache)])
        if self.reference == "gt":
            if reference is None:
                raise ValueError(f"{self.name} with reference='gt' needs the reference images")
            self.ref_index = torch.cat([self.ref_index, index])
            self.ref_features = torch.cat([self.ref_features,
                                           self._batch_features(reference, "reference", cache)])

    def ordered_features(self) -> np.ndarray:
        """The restored images' features (N x 2048 float32) in global index order."""
        return ordered_rows(self.index, self.features)[1].numpy()

    def folder_features(self, folder: Path) -> np.ndarray:
        """Features of every image file directly in ``folder`` (sorted by name, as the official
        scripts list them), float32 N x 2048."""
        from vqfr.data.images import is_image_file, read_image

        paths = sorted(p for p in folder.iterdir() if p.is_file() and is_image_file(p))
        if not paths:
            raise VqfrError(f"{folder}: no images to compute FID statistics from")
        features = []
        for start in range(0, len(paths), self.batch_size):
            batch = np.stack([read_image(p) for p in paths[start:start + self.batch_size]])
            features.append(self.extract(torch.from_numpy(batch).permute(0, 3, 1, 2)))
        return torch.cat(features).numpy()

    def reference_features(self) -> np.ndarray | None:
        """The reference images' features (rows in index order for ``gt``, in file order for a
        folder), or None for a statistics file."""
        if self.reference == "gt":
            return ordered_rows(self.ref_index, self.ref_features)[1].numpy()
        if self._ref_stats is not None and self._ref_features is None:
            return None
        if self._ref_features is None:  # a folder: computed once
            self._ref_features = self.folder_features(self.reference)
        return self._ref_features

    def reference_statistics(self) -> tuple[np.ndarray, np.ndarray, int | None]:
        """(mean, cov, N or None if unknown) of the reference."""
        if self._ref_stats is None or self.reference == "gt":
            features = self.reference_features()
            stats = (*feature_statistics(features), len(features))
            if self.reference == "gt":
                return stats
            self._ref_stats = stats
        return self._ref_stats

    def bootstrap_rows(self) -> dict[str, Any]:
        """What ``vqfr.stats`` resamples, as numpy arrays: the restored ``features`` and their
        ``index``, and the reference: its ``features`` (gt: with ``index``; a folder) or, for a
        statistics file, its ``mean`` and ``cov``; ``reference_kind`` says which."""
        index, features = ordered_rows(self.index, self.features)
        if self.reference == "gt":
            ref_index, ref_features = ordered_rows(self.ref_index, self.ref_features)
            reference = {"features": ref_features.numpy(), "index": ref_index.numpy()}
            kind = "gt"
        elif self.reference_features() is not None:
            reference, kind = {"features": self.reference_features()}, "folder"
        else:
            mean, cov, _ = self.reference_statistics()
            reference, kind = {"mean": mean, "cov": cov}, "stats"
        return {"statistic": self.name, "restored": {"features": features.numpy(),
                                                     "index": index.numpy()},
                "reference": reference, "reference_kind": kind}

    def compute(self) -> MetricResult:
        features = self.ordered_features()
        count = len(features)
        extra: dict[str, Any] = {"count": count}
        if count < 2:
            return MetricResult(value=math.nan, extra=extra)
        ref_mean, ref_cov, ref_count = self.reference_statistics()
        if ref_count is not None:
            extra["reference_count"] = ref_count
        if count < SMALL_SAMPLE:
            message = (f"FID from {count} < {SMALL_SAMPLE} images: the covariance is singular and "
                       "the value is biased (roughly in proportion to 1/N); compare FIDs only at "
                       "equal N")
            warnings.warn(message, stacklevel=2)
            extra["small_sample"] = message
        mean, cov = feature_statistics(features)
        # Fewer images than dimensions: cov = A A^T with A the centred features / sqrt(N - 1),
        # so the trace term is an N x N eigenproblem (same value, milliseconds, not seconds).
        factor = None
        if count <= features.shape[1]:
            centred = features.astype(np.float64) - features.astype(np.float64).mean(0)
            factor = centred.T / np.sqrt(count - 1)
        value = frechet_distance(mean, cov, ref_mean, ref_cov, factor1=factor)
        return MetricResult(value=value, per_image=None, extra=extra)

    def options(self) -> dict[str, Any]:
        return {"reference": str(self.reference),
                "input": "[-1,1] bilinear 299 (align_corners=False)", "features": "pool3",
                "mean_dtype": "float32", "frechet": "eigh"}
