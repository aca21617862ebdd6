"""Model restoration of uint8 batches: the official input normalisation, the model's
``restore()`` under inference mode (autocast for fp16/bf16), and the official ``tensor2img``."""
from __future__ import annotations

import os
from contextlib import nullcontext
from collections.abc import Mapping
from typing import Any

import torch

from vqfr.errors import VqfrError
from vqfr.run.methods import Method

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
SIZE_POLICIES = ("512", "multiple-of-32")


def make_deterministic(device: str | torch.device | None = None) -> None:
    """Deterministic CUDA kernels (``device`` None: whenever CUDA is available). Warn, don't
    fail, where torch has none: what remains nondeterministic on CUDA is atomics in a few
    backward-only kernels, unused here.

    Nothing to do on CPU: the inference kernels used here (convolutions, matmuls, interpolation,
    reductions) give the same bits on every call for a given thread count, with or without the
    flag (tests/test_run_pipeline.py: a fresh process, a resumed run and a 2-process run give the
    same PNGs and numbers bit for bit; so do VQFR v1 with and without the flag). It would cost:
    ``torch.use_deterministic_algorithms`` imports torch._inductor (1-2 s per process) and fills
    every uninitialised tensor with NaN (about 3 % of a CPU convolution's time)."""
    cuda = (torch.device(device).type == "cuda" if device is not None
            else torch.cuda.is_available())
    if not cuda:
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False


def to_model_input(u8: torch.Tensor) -> torch.Tensor:
    """uint8 RGB -> float in [-1, 1] (official ``img/255`` then ``normalize(0.5, 0.5)``)."""
    return (u8.float() / 255 - 0.5) / 0.5


def tensor2img(y: torch.Tensor) -> torch.Tensor:
    """basicsr ``tensor2img(min_max=(-1, 1))`` in torch: float32 clamp, ``(y + 1) / 2``,
    ``* 255``, round half to even (numpy's and torch's ``round``), uint8. Same float32 ops as
    the official numpy path, so bit-identical."""
    y = y.float().clamp(-1, 1)
    return ((y + 1) / 2 * 255.0).round().to(torch.uint8)


def size_error(method: Method, height: int, width: int, allow_size: str = "512") -> str | None:
    """Why ``method`` cannot restore an image of this size (None if it can). The official test
    setting is 512x512; ``allow_size="multiple-of-32"`` admits what VQFR v1 also accepts."""
    if method.kind != "model" or (height, width) == (512, 512):
        return None
    if allow_size == "multiple-of-32" and method.input_size == "multiple-of-32":
        if height % 32 == 0 and width % 32 == 0:
            return None
        return (f"{method.name} needs height and width that are multiples of 32, "
                f"got {width}x{height}")
    hint = (" (pass --allow-size multiple-of-32 to accept multiples of 32)"
            if method.input_size == "multiple-of-32" else "")
    return f"{method.name} restores 512x512 aligned faces, got {width}x{height}{hint}"


class Restorer:
    """One zoo model on one device, turning uint8 LQ batches into uint8 restored batches."""

    def __init__(self, method: Method, overrides: Mapping[str, str] | None = None,
                 device: str | torch.device = "cpu", dtype: str = "fp32",
                 synthetic_seed: int | None = None) -> None:
        from vqfr.zoo import create_model, resolve_asset
        from vqfr.zoo.registry import MODELS

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.method = method
        self.device = torch.device(device)
        self.dtype = dtype
        spec = MODELS[method.name]
        if synthetic_seed is None:   # a non-official file is reported here, once per run
            asset = resolve_asset(spec.asset, overrides)
            self.weights: dict[str, Any] = {"asset": spec.asset, "path": str(asset.path),
                                            "sha256": asset.sha256, "official": asset.official,
                                            "synthetic_seed": None}
        else:
            self.weights = {"asset": spec.asset, "path": None,
                            "sha256": f"synthetic-seed-{synthetic_seed}", "official": False,
                            "synthetic_seed": synthetic_seed}
        self._build = lambda: create_model(method.name, overrides, device=self.device,
                                           synthetic_seed=synthetic_seed)
        self._model: torch.nn.Module | None = None

    @property
    def model(self) -> torch.nn.Module:
        """Built on first use, so a run whose images all come from the cache loads no model."""
        if self._model is None:
            self._model = self._build()
        return self._model

    def share_model(self, other: "Restorer") -> None:
        """Use ``other``'s model (built once, on first use by either): the variants of one
        model in a run differ only in the options given to ``restore()``."""
        if (other.method.name, other.weights["sha256"], other.device, other.dtype) != (
                self.method.name, self.weights["sha256"], self.device, self.dtype):
            raise ValueError("only restorers of the same model, weights, device and dtype can "
                             "share it")
        self._build = lambda: other.model

    def _autocast(self):
        if self.dtype == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=DTYPES[self.dtype])

    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        """uint8 B x 3 x H x W RGB (any device) -> uint8 B x 3 x H x W RGB on ``self.device``."""
        with torch.inference_mode(), self._autocast():
            try:
                out = self.model.restore(to_model_input(lq.to(self.device)),
                                         **self.method.options)
            except ValueError as exc:   # restore() refuses an option value given by the user
                raise VqfrError(f"{self.method.label}: {exc}") from None
        return tensor2img(out)


# Models whose restore_fidelity_sweep(x, values, **options) gives, from one forward, what
# restore(x, option=value, **options) gives for each value, bit for bit (tested): the option it
# sweeps and the other options it takes. Other options must be at their defaults.
SWEEPABLE = {"vqfr-v2": ("fidelity_ratio", ("twm_disabled",)),
             "codeformer": ("fidelity_weight", ("gray_threshold",))}


def sweep_family(method: Method) -> tuple | None:
    """Methods with the same family share one forward: (model, swept option, the other
    options). None for a method that cannot share."""
    if method.kind != "model" or method.name not in SWEEPABLE:
        return None
    option, passed = SWEEPABLE[method.name]
    from vqfr.run.methods import parse_method

    defaults = parse_method(method.name).options
    others = {k: v for k, v in method.options.items() if k != option}
    if any(k not in passed and v != defaults.get(k) for k, v in others.items()):
        return None
    return (method.name, option, tuple(sorted((k, repr(v)) for k, v in others.items()
                                              if k in passed)))


class SweepRestorer:
    """Restorers for the members of one sweep family (same model, weights and other options;
    different values of the swept option) computing every member's output from one forward.
    The outputs of the last few input batches are kept, so members run batch by batch in
    lockstep restore each batch once."""

    KEEP = 4   # input groups remembered (a batch of mixed sizes is restored in several)

    def __init__(self, base: Restorer, values: list[float]) -> None:
        passed = SWEEPABLE[base.method.name][1]
        self.base = base
        self.values = [float(v) for v in values]
        self.options = {k: v for k, v in base.method.options.items() if k in passed}
        self._recent: list[tuple[torch.Tensor, dict[float, torch.Tensor]]] = []

    def member(self, value: float) -> "SweepMember":
        return SweepMember(self, float(value))

    def restore(self, lq: torch.Tensor, value: float) -> torch.Tensor:
        for seen, outputs in self._recent:
            if seen.shape == lq.shape and torch.equal(seen, lq):
                return outputs[value]
        base = self.base
        with torch.inference_mode(), base._autocast():
            raw = base.model.restore_fidelity_sweep(to_model_input(lq.to(base.device)),
                                                    self.values, **self.options)
        outputs = {v: tensor2img(raw[v]) for v in self.values}
        self._recent = [(lq.clone(), outputs)] + self._recent[:self.KEEP - 1]
        return outputs[value]


class SweepMember:
    """One member of a :class:`SweepRestorer`, called like a :class:`Restorer`."""

    def __init__(self, sweep: SweepRestorer, value: float) -> None:
        self.sweep = sweep
        self.value = value
        self.weights = sweep.base.weights

    def __call__(self, lq: torch.Tensor) -> torch.Tensor:
        return self.sweep.restore(lq, self.value)
