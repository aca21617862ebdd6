"""How float32 work is done on CUDA: the precision policy of a run.

On Ampere and newer GPUs, PyTorch may compute float32 convolutions and matrix products with
TF32 tensor cores (10-bit mantissa inputs). Its defaults allow that for cuDNN convolutions and
forbid it for matrix products (cuBLAS). Policies:

- ``exact``: no TF32 anywhere; IEEE float32 as the CPU goldens were computed. Outputs agree
  with the CPU to float reordering, on every GPU generation.
- ``official``: PyTorch's defaults (cuDNN convolutions in TF32, matrix products in float32),
  what the official VQFR / GFPGAN / CodeFormer code and metric scripts ran with on the
  papers' GPUs.
- ``tf32``: TF32 for both; the fastest float32, for speed studies.

On a CPU all three are the same arithmetic (:func:`effective_precision` gives ``exact``).
Reduced-precision autocast (``--dtype fp16/bf16``) is separate and applies on top: what
autocast leaves in float32 (the codebook lookups, the deformable convolutions) follows the policy.

The flags are process-wide (every thread), so :func:`precision` sets them for a block and puts
the previous values back afterwards; blocks nest, the innermost wins. So a network whose
result flips with TF32 can take the policy into its own hands: the AWing FAN of the LMD metric
must run inside ``precision("exact")`` whatever the run's policy (TF32 moves its heatmaps by
1.6e-3 relative and flips argmaxes; reference README, "AWing FAN").

PyTorch's legacy flags (``torch.backends.cudnn.allow_tf32``,
``torch.backends.cuda.matmul.allow_tf32``) are used, and only they: they exist in every
supported torch, and newer torch refuses to read them after its per-operator
``fp32_precision`` settings were set (seen with torch 2.14), so the two APIs are not mixed.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

# policy -> (cuDNN convolutions may use TF32, cuBLAS matrix products may use TF32)
PRECISIONS: dict[str, tuple[bool, bool]] = {
    "exact": (False, False),
    "official": (True, False),
    "tf32": (True, True),
}
DEFAULT_PRECISION = "exact"


def check_precision(policy: str) -> str:
    if policy not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {policy!r}")
    return policy


def tf32_flags() -> dict[str, bool]:
    """The flags in force now: {"cudnn_conv_tf32", "cuda_matmul_tf32"}."""
    return {"cudnn_conv_tf32": bool(torch.backends.cudnn.allow_tf32),
            "cuda_matmul_tf32": bool(torch.backends.cuda.matmul.allow_tf32)}


def active_precision() -> str | None:
    """The policy whose flags are in force now (None for a combination no policy sets)."""
    flags = tf32_flags()
    current = (flags["cudnn_conv_tf32"], flags["cuda_matmul_tf32"])
    return next((name for name, value in PRECISIONS.items() if value == current), None)


def _set(conv_tf32: bool, matmul_tf32: bool) -> None:
    torch.backends.cudnn.allow_tf32 = conv_tf32
    torch.backends.cuda.matmul.allow_tf32 = matmul_tf32


@contextmanager
def precision(policy: str) -> Iterator[None]:
    """Run the block under ``policy`` (see the module doc); the previous flags come back after."""
    conv_tf32, matmul_tf32 = PRECISIONS[check_precision(policy)]
    previous = tf32_flags()
    _set(conv_tf32, matmul_tf32)
    try:
        yield
    finally:
        _set(previous["cudnn_conv_tf32"], previous["cuda_matmul_tf32"])


def effective_precision(policy: str, device: str | torch.device) -> str:
    """What ``policy`` means for work on ``device``: itself on CUDA, ``exact`` elsewhere (the
    TF32 flags concern CUDA only). This is what results are keyed and labelled by."""
    check_precision(policy)
    return policy if torch.device(device).type == "cuda" else "exact"
