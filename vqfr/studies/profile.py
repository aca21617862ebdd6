"""Model size, FLOPs, latency, throughput and peak memory of the zoo models, and the fast-path
check (channels-last, fp16/bf16 autocast, torch.compile) as PSNR against the fp32 output.

FLOPs follow torch.utils.flop_counter (FLOPs = 2 x multiply-accumulates of conv/matmul-like ops;
norms, activations, interpolation not counted), counted with fake tensors (shapes only, no
memory, any size in seconds) where the model allows it. FlopCounterMode has no formula for
``torchvision::deform_conv2d``; this module gives it one, 2·Cout·(Cin/groups)·kh·kw·Hout·Wout per
call (a dense conv of the same shape; the bilinear sampling is not counted), and reports the
counts with and without it: the VQFR paper's "1.07 TFlops" is the count without the DCNs in
multiply-accumulates (2133 GFLOPs / 2 for v1).

Settings: autocast dtype (fp32, fp16, bf16), batch size, the ``vqfr.precision`` policy of the
float32 work on CUDA (exact, official, tf32), channels-last, torch.compile. Each row records
images/s, latency, peak memory, the achieved FLOP/s where the FLOPs were counted at the timing
size, and the PSNR of its uint8 output against the plain exact-fp32 output of the same batch. A
setting that runs out of GPU memory is recorded with its error and the others go on.

Peak memory, over all calls of a setting (the first one allocates the activations): on CUDA
``torch.cuda.max_memory_allocated`` (tensors, weights included, no allocator cache); on CPU the
peak resident set size above the level before the first call (weights already resident), sampled
every 2 ms from /proc/self/statm (Linux only; includes allocator slack, misses spikes shorter
than the sampling period, and reads 0 when memory freed by an earlier setting is reused).
"""
from __future__ import annotations

import math
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torchvision  # noqa: F401  (registers torch.ops.torchvision.deform_conv2d)
from torch._subclasses.fake_tensor import (DataDependentOutputException,
                                           DynamicOutputShapeException, FakeTensorMode)
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from vqfr.archs.deform import torchvision_kernel
from vqfr.precision import DEFAULT_PRECISION, effective_precision, precision
from vqfr.run.restorer import DTYPES, make_deterministic, tensor2img, to_model_input

PROFILE_SCHEMA = "vqfr-eval/profile/1"
DEFORM_CONV2D = torch.ops.torchvision.deform_conv2d


@dataclass(frozen=True)
class Setting:
    dtype: str = "fp32"
    batch_size: int = 1
    channels_last: bool = False
    compile: bool = False
    precision: str = DEFAULT_PRECISION

    @property
    def is_reference(self) -> bool:
        return (self.dtype == "fp32" and self.precision == "exact" and not self.channels_last
                and not self.compile)


def deform_conv2d_flops(input_shape, weight_shape, *args, out_shape, **kwargs) -> int:
    """torchvision::deform_conv2d: weight is [Cout, Cin/groups, kh, kw], output [N, Cout, H, W]."""
    _, cin_per_group, kh, kw = weight_shape
    return 2 * math.prod(out_shape) * cin_per_group * kh * kw


def addmm_inplace_flops(self_shape, a_shape, b_shape, *args, out_shape, **kwargs) -> int:
    """aten.addmm_ (no formula in FlopCounterMode): the matmul, as torch counts addmm."""
    (m, k), (_, n) = a_shape, b_shape
    return 2 * m * n * k


def count_params(model: torch.nn.Module) -> dict[str, Any]:
    params = list(model.parameters())
    return {"params": sum(p.numel() for p in params),
            "trainable_params": sum(p.numel() for p in params if p.requires_grad),
            # top-level children, and parameters of the model itself (CodeFormer position_emb)
            "params_by_module": {n: p.numel() for n, p in model.named_parameters(recurse=False)}
            | {name: sum(p.numel() for p in child.parameters())
               for name, child in model.named_children()}}


class _StaticBincount(TorchDispatchMode):
    """Replaces ``bincount`` (the quantizers' code-usage counters: a data-dependent output shape
    fake tensors cannot have) by zeros of length ``minlength``. The counters never feed back into
    the computation and bincount has no FLOPs, so the count is unchanged."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.bincount.default:
            minlength = kwargs.get("minlength", args[2] if len(args) > 2 else 0)
            return torch.zeros(minlength, dtype=torch.int64, device=args[0].device)
        return func(*args, **kwargs)


def count_flops(model: torch.nn.Module, x: torch.Tensor, options: dict[str, Any]) -> dict[str, Any]:
    """FLOPs of ``model.restore(x, **options)`` by operator and by top-level child."""
    counter = FlopCounterMode(display=False, custom_mapping={
        DEFORM_CONV2D: deform_conv2d_flops,
        # in-place addmm_ (VQFR v1 code distances) does the work of addmm but has no formula
        torch.ops.aten.addmm_: addmm_inplace_flops})
    # FlopCounterMode's module tracker hooks every tensor argument that requires grad, and fails
    # on a parameter passed as an argument (CodeFormer's position embedding) under no_grad.
    requires_grad = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    # The tracker names a module's children only when the module itself is called, and
    # restore() may call children directly (CodeFormer): call the model with restore() as its
    # forward, so every module gets its qualified name.
    entered = []

    def forward(inputs: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        if entered:  # restore() calling the model's own forward
            return type(model).forward(model, inputs, *args, **kwargs)
        entered.append(True)
        return type(model).restore(model, inputs, **options)

    model.forward = forward
    try:
        # torchvision's op is the one counted (the CPU fast path is the same arithmetic).
        with counter, _StaticBincount(), torch.no_grad(), torchvision_kernel():
            model(x)
    finally:
        del model.forward
        for param, flag in zip(model.parameters(), requires_grad):
            param.requires_grad_(flag)
    counts = counter.get_flop_counts()
    total = sum(counts["Global"].values())
    dcn = counts["Global"].get(DEFORM_CONV2D, 0)
    root = type(model).__name__
    return {"size": x.shape[-1], "flopcounter": total - dcn, "deform_conv2d": dcn, "total": total,
            "by_op": {str(op): n for op, n in counts["Global"].items()},
            "by_module": {name: _subtree_flops(counts, f"{root}.{name}")
                          for name, _ in model.named_children()}}


def _subtree_flops(counts: dict[str, dict[Any, int]], prefix: str) -> int:
    """FLOPs under module ``prefix``. A module's entry includes its children's only when its own
    forward ran; a model may call a child's submodules directly, so add up the outermost entries."""
    keys = [k for k in counts if k == prefix or k.startswith(prefix + ".")]
    outer = [k for k in keys if not any(k.startswith(o + ".") for o in keys if o != k)]
    return sum(sum(counts[k].values()) for k in outer)


def model_flops(name: str, size: int, options: dict[str, Any],
                model: torch.nn.Module | None = None) -> dict[str, Any]:
    """FLOPs of one 1 x 3 x size x size restore with fake tensors (shapes only: seconds, no
    memory, any size). Models with data-dependent control flow in ``restore()`` (CodeFormer's
    grey-input check) cannot run on fake tensors; they are counted by a real forward of
    ``model`` on a random input instead."""
    from vqfr.zoo.registry import MODELS
    from vqfr.zoo.specs import build_arch

    try:
        with FakeTensorMode():
            fake = build_arch(MODELS[name]).eval().requires_grad_(False)
            return count_flops(fake, torch.zeros(1, 3, size, size), options) | {
                "counted_on": "fake tensors"}
    except (DataDependentOutputException, DynamicOutputShapeException):
        if model is None:
            raise
    device = next(model.parameters()).device
    x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    return count_flops(model, x, options) | {"counted_on": "real forward (random input)"}


class _RssSampler:
    """Peak resident set size above the baseline while the context runs (CPU memory)."""

    PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def __init__(self, period_s: float = 0.002):
        self.period_s = period_s
        self.peak = 0
        self._stop = threading.Event()

    @staticmethod
    def available() -> bool:
        return os.path.exists("/proc/self/statm")

    def _rss(self) -> int:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.PAGE

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(self.period_s)

    def __enter__(self):
        self.baseline = self._rss()
        self.peak = self.baseline
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._rss())

    @property
    def increase(self) -> int:
        return self.peak - self.baseline


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def psnr_u8(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean((a.double() - b.double()) ** 2).item()
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def time_setting(model: torch.nn.Module, options: dict[str, Any], lq: torch.Tensor,
                 setting: Setting, warmup: int, repeats: int) -> tuple[dict[str, Any], torch.Tensor]:
    """Latency of ``restore()`` on the uint8 batch ``lq`` under ``setting``; returns the timing
    record and the uint8 output of the last call."""
    device = lq.device
    memory_format = torch.channels_last if setting.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    restore = torch.compile(model.restore) if setting.compile else model.restore
    autocast = (nullcontext() if setting.dtype == "fp32"
                else torch.autocast(device.type, dtype=DTYPES[setting.dtype]))
    x = to_model_input(lq).contiguous(memory_format=memory_format)

    def call() -> torch.Tensor:
        with torch.inference_mode(), autocast:
            return restore(x, **options)

    record: dict[str, Any] = asdict(setting) | {
        "precision": effective_precision(setting.precision, device), "size": lq.shape[-1]}
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    # from before the first call: activations are allocated then and reused afterwards
    sampler = _RssSampler() if device.type == "cpu" and _RssSampler.available() else None
    runs = []
    with sampler or nullcontext(), precision(setting.precision):
        start = time.perf_counter()
        out = call()
        _sync(device)
        record["first_call_s"] = time.perf_counter() - start      # includes compilation
        for _ in range(max(warmup - 1, 0)):
            call()
        _sync(device)
        for _ in range(repeats):
            start = time.perf_counter()
            out = call()
            _sync(device)
            runs.append(time.perf_counter() - start)
    median = statistics.median(runs)
    record["latency_s"] = {"median": median, "min": min(runs), "max": max(runs), "runs": runs}
    record["images_per_s"] = setting.batch_size / median
    if device.type == "cuda":
        record["peak_memory_bytes"] = torch.cuda.max_memory_allocated(device)
        record["memory_kind"] = "CUDA max_memory_allocated"
    elif sampler is not None:
        record["peak_memory_bytes"] = sampler.increase
        record["memory_kind"] = "CPU peak RSS increase (sampled)"
    else:
        record["peak_memory_bytes"] = None
        record["memory_kind"] = "not measured"
    model.to(memory_format=torch.contiguous_format)
    return record, tensor2img(out)


def _timed_or_out_of_memory(model: torch.nn.Module, options: dict[str, Any], lq: torch.Tensor,
                            setting: Setting, warmup: int, repeats: int) -> dict[str, Any]:
    """:func:`time_setting`'s record with its uint8 output under "output", or the setting with
    an "error" where the GPU ran out of memory (the others still run)."""
    try:
        timing, out = time_setting(model, options, lq, setting, warmup, repeats)
        return timing | {"output": out}
    except torch.cuda.OutOfMemoryError as exc:
        model.to(memory_format=torch.contiguous_format)
        return asdict(setting) | {"size": lq.shape[-1],
                                  "error": f"out of memory: {str(exc).splitlines()[0][:300]}"}
    finally:
        if lq.device.type == "cuda":
            torch.cuda.empty_cache()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def profile_model(name: str, device: torch.device, settings: Iterable[Setting], size: int,
                  flops_size: int | None, warmup: int, repeats: int,
                  synthetic_seed: int = 1,
                  should_run: Callable[[Setting], bool] | None = None,
                  model: torch.nn.Module | None = None) -> dict[str, Any]:
    """Parameters, FLOPs and a timing row per setting. ``should_run`` (e.g. a time budget) is
    asked before each setting; one it declines is recorded as skipped. ``model``: the zoo
    model already built on ``device`` (default: built here with synthetic weights)."""
    from vqfr.zoo import create_model
    from vqfr.zoo.registry import MODELS

    spec = MODELS[name]
    record: dict[str, Any] = {"model": name, "options": dict(spec.options)}
    if model is None:
        model = create_model(name, device=device, synthetic_seed=synthetic_seed)
    record |= count_params(model)
    if flops_size:
        record["flops"] = model_flops(name, flops_size, spec.options, model)
    flops_per_image = (record["flops"]["total"]
                       if flops_size == size and "flops" in record else None)
    generator = torch.Generator().manual_seed(0)
    references: dict[int, torch.Tensor] = {}    # batch size -> exact fp32 output
    record["settings"] = []
    for setting in settings:
        if should_run is not None and not should_run(setting):
            record["settings"].append(asdict(setting) | {"size": size, "skipped": "time"})
            continue
        lq = torch.randint(0, 256, (setting.batch_size, 3, size, size), dtype=torch.uint8,
                           generator=generator.manual_seed(setting.batch_size)).to(device)
        timing = _timed_or_out_of_memory(model, spec.options, lq, setting, warmup, repeats)
        if "error" not in timing:
            out = timing.pop("output")
            if setting.is_reference:
                references[setting.batch_size] = out
                timing["psnr_vs_fp32"] = None
            else:
                if setting.batch_size not in references:
                    reference = _timed_or_out_of_memory(
                        model, spec.options, lq, Setting(batch_size=setting.batch_size), 0, 1)
                    references[setting.batch_size] = reference.get("output")
                reference = references[setting.batch_size]
                timing["psnr_vs_fp32"] = None if reference is None else psnr_u8(out, reference)
        del lq
        if flops_per_image and "images_per_s" in timing:
            timing["achieved_flops_per_s"] = flops_per_image * timing["images_per_s"]
        record["settings"].append(timing)
    return record


def profile(models: Iterable[str], device: str = "cpu", dtypes: Iterable[str] = ("fp32",),
            batch_sizes: Iterable[int] = (1,), channels_last: bool = False,
            compile: bool = False, size: int | None = None, flops_size: int | None = 512,
            warmup: int = 2, repeats: int = 5, quick: bool = False,
            synthetic_seed: int = 1,
            precisions: Iterable[str] = (DEFAULT_PRECISION,)) -> dict[str, Any]:
    """The ``vqfr-eval profile --json`` record: every dtype x precision x batch size.
    ``size=None``: 512, or in ``quick`` mode 64 for models that accept multiples of 32 (VQFR
    v1). Timing uses synthetic weights."""
    from vqfr.zoo.registry import MODELS

    torch_device = torch.device(device)
    make_deterministic(torch_device)      # as a run: the same kernels are timed
    # off CUDA every policy is the same arithmetic: time it once
    precisions = list(dict.fromkeys(effective_precision(p, torch_device) for p in precisions))
    combinations = [(dtype, p) for dtype in dtypes for p in precisions]
    settings = [Setting(dtype, batch, False, False, p)
                for dtype, p in combinations for batch in batch_sizes]
    if channels_last or compile:   # the fast paths, each beside the plain fp32 reference
        settings = [Setting(batch_size=b) for b in batch_sizes] + [
            Setting(dtype, b, channels_last, compile, p)
            for dtype, p in combinations for b in batch_sizes]
    settings = list(dict.fromkeys(settings))
    records = []
    for name in models:
        model_size = size or (64 if quick and MODELS[name].input_size == "multiple-of-32"
                              else 512)
        records.append(profile_model(name, torch_device, settings, model_size, flops_size,
                                     warmup, repeats, synthetic_seed))
    return {"schema": PROFILE_SCHEMA, "device": str(torch_device),
            "device_name": device_name(torch_device), "torch": torch.__version__,
            "cuda": torch.version.cuda if torch_device.type == "cuda" else None,
            "threads": torch.get_num_threads(),
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "weights": f"synthetic (seed {synthetic_seed}); timings do not depend on the values",
            "models": records}
