"""The metric protocol shared by every metric of the suite (torchmetrics style).

A metric is an object with ``update()`` and ``compute()``. Everything it accumulates lives in
*states* declared with ``add_state(name, default, reduce)``, so that a run sharded over
torch.distributed processes merges into exactly the single-process result:

- ``reduce="sum"``: tensors added elementwise (counts, sufficient statistics);
- ``reduce="cat"``: per-image rows concatenated along dim 0. Rows carry their global image index
  (see ``index`` below) and are put back in index order before ``compute()``, so the result does
  not depend on how images were sharded or batched;
- ``reduce="max"`` / ``"min"``: elementwise extrema.

Images reach ``update()`` as they would be read back from the PNG files the official scripts read:
uint8 tensors, B x 3 x H x W, **RGB**, on any device. ``index`` is a LongTensor [B] of global
positions in the dataset's file list (the runner assigns them), which keys per-image values.
"""
from __future__ import annotations

import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from vqfr.errors import ImageTooSmall, VqfrError

REDUCTIONS = ("sum", "cat", "max", "min")


@dataclass
class MetricResult:
    """What ``compute()`` returns.

    value: the dataset-level number (as the official script prints it).
    per_image: global image index -> value, for metrics that have one per image (None for FID).
    extra: further named numbers worth recording (e.g. Deg. with identical pairs kept, counts).
    unmeasured: global image index -> why the metric has no value for it (where the official
        script would stop, e.g. LMD's landmark at the last heatmap pixel); such images are left
        out of ``value`` and ``per_image``, and the run goes on.
    """

    value: float
    per_image: dict[int, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    unmeasured: dict[int, str] = field(default_factory=dict)


class FileGray(NamedTuple):
    """Per image of a batch, the grey image its file's own decoder gives (``cv2.imread(path,
    0)``: libjpeg's luma for a JPEG), where that is not a function of the RGB pixels; None where
    it is (PNG, and images written by the run). Metrics that read images in grey, as the
    official identity script does, take it as ``update(..., file_gray=...)``."""

    restored: Sequence[Any]      # uint8 H x W numpy arrays or None
    reference: Sequence[Any]


class Metric:
    """Base class. Subclasses set the class attributes and implement ``update``/``compute``."""

    name: ClassVar[str] = ""
    lower_is_better: ClassVar[bool] = True
    needs_reference: ClassVar[bool] = True  # full-reference (needs GT) or no-reference
    asset: ClassVar[str | None] = None      # the vqfr.zoo asset with its weights / parameters

    @classmethod
    def required_assets(cls, options: dict[str, Any]) -> tuple[str, ...]:
        """The zoo assets a metric built with these options reads (so a run can say what is
        missing before building anything)."""
        return (cls.asset,) if cls.asset else ()

    def __init__(self) -> None:
        self._defaults: dict[str, torch.Tensor] = {}
        self._reduce: dict[str, str] = {}

    # -- states ---------------------------------------------------------------------------
    def add_state(self, name: str, default: torch.Tensor, reduce: str) -> None:
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self._defaults[name] = default.detach().clone()
        self._reduce[name] = reduce
        setattr(self, name, default.detach().clone())

    def reset(self) -> None:
        for name, default in self._defaults.items():
            setattr(self, name, default.clone())

    def states(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name) for name in self._defaults}

    def merge_states(self, others: list[dict[str, torch.Tensor]]) -> None:
        """Replace this metric's states by the reduction of ``others`` (self's included or not)."""
        for name, reduce in self._reduce.items():
            parts = [o[name].detach().cpu() for o in others]
            if reduce == "sum":
                merged = parts[0].clone()
                for p in parts[1:]:
                    merged = merged + p
            elif reduce == "cat":
                merged = torch.cat(parts, dim=0) if parts else self._defaults[name].clone()
            elif reduce == "max":
                merged = torch.stack(parts).amax(0)
            else:
                merged = torch.stack(parts).amin(0)
            setattr(self, name, merged)

    def sync(self, group: Any = None) -> None:
        """Gather the states of every process of ``group`` into every process (no-op if not
        distributed). ``all_gather_object`` works on gloo and NCCL alike and keeps dtypes."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size(group) == 1:
            return
        mine = {k: v.detach().cpu() for k, v in self.states().items()}
        gathered: list[Any] = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, mine, group=group)
        self.merge_states(gathered)

    # -- the protocol ---------------------------------------------------------------------
    def update(self, restored: torch.Tensor, reference: torch.Tensor | None = None,
               index: torch.Tensor | None = None) -> None:
        raise NotImplementedError

    def compute(self) -> MetricResult:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The protocol options in force, recorded next to every number this metric produces."""
        return {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.options()})"


def ordered_rows(index: torch.Tensor, *values: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Sort cat-state rows by global image index (and reject duplicates: an image counted twice
    is a bug in the sharding, not something to average over)."""
    order = torch.argsort(index, stable=True)
    index = index[order]
    if index.numel() > 1 and bool((index[1:] == index[:-1]).any()):
        raise RuntimeError("the same image index was measured twice; shards overlap")
    return (index,) + tuple(v[order] for v in values)


def check_images(restored: torch.Tensor, reference: torch.Tensor | None, metric: str) -> None:
    """Shape/dtype contract of ``update``: uint8, B x 3 x H x W, reference the same shape."""
    if restored.dtype != torch.uint8 or restored.ndim != 4 or restored.shape[1] != 3:
        raise ValueError(f"{metric}: expected uint8 Bx3xHxW RGB images, got {restored.dtype} "
                         f"{tuple(restored.shape)}")
    if reference is not None and reference.shape != restored.shape:
        raise ValueError(f"{metric}: restored {tuple(restored.shape)} and reference "
                         f"{tuple(reference.shape)} differ in shape")



def require_side(metric: str, height: int, width: int, min_side: int, why: str = "",
                 crop_border: int = 0) -> None:
    """``ImageTooSmall`` where an image (after ``crop_border`` pixels off each edge) has a side
    under ``min_side``; the message says, for a crop, the largest that works."""
    left = (max(height - 2 * crop_border, 0), max(width - 2 * crop_border, 0))
    if min(left) >= min_side:
        return
    message = f"{metric} needs images of at least {min_side} x {min_side}{why}, got " \
              f"{left[0]} x {left[1]}"
    if crop_border:
        largest = (min(height, width) - min_side) // 2
        message += f" after crop_border={crop_border} ({height} x {width} before)" + (
            f": use crop_border <= {largest}" if largest >= 0 else "")
    raise ImageTooSmall(message, (height, width))


def read_npz(path, what: str, keys: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file (``keys`` required), loaded without pickle: a file holding
    object arrays (pickled Python objects) is refused, never unpickled. Any problem is a
    ``VqfrError`` naming the file and saying it should be ``what``."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != b"PK\x03\x04":
                raise ValueError("not an .npz (zip) archive")
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in keys if k not in data.files]
            if missing:
                raise ValueError(f"no {', '.join(missing)} (it holds: "
                                 f"{', '.join(data.files) or 'nothing'})")
            return {k: data[k] for k in data.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        reason = ("it holds object arrays (pickled Python objects), which are never loaded"
                  if "Object arrays" in str(exc) else str(exc))
        raise VqfrError(f"{path}: not usable as {what}: {reason}") from None
