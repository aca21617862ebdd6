"""Forward latency and throughput of VQFR v1 / v2 (``restore()``, randomly initialised weights:
the cost does not depend on the values).

    python benchmarks/bench_vqfr.py                      # 512x512, batch 1 and 8, fp32 (+ fp16/bf16 on CUDA)
    python benchmarks/bench_vqfr.py --quick              # 256x256, batch 1, one timed run
    python benchmarks/bench_vqfr.py --device cuda --repeats 10 --batch-sizes 1 8 16

Prints the median seconds per batch over ``--repeats`` timed runs after ``--warmup`` runs,
images/s, and the median process CPU time (all threads) per batch. The variants are the ones the suite evaluates: v1 main branch (the paper's result),
v2 at fidelity ratio 0 (the yml / demo setting: the texture branch, the main branch is skipped)
and v2 at ratio 1 (main branch computed).

On CPU each variant runs twice, with the deformable convolutions on torchvision's kernel (what the
official code runs) and on ``vqfr.archs.deform``'s CPU path (same output bit for bit), and the
ratio is printed; ``--dcn`` picks one.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from contextlib import nullcontext

import torch

from vqfr.archs.deform import torchvision_kernel
from vqfr.archs.vqfr_v1 import VQFRv1
from vqfr.archs.vqfr_v2 import VQFRv2

VARIANTS = {
    "v1": [("main", {"branch": "main"})],
    "v2": [("r=0", {"fidelity_ratio": 0.0}), ("r=1", {"fidelity_ratio": 1.0})],
}
DTYPES = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", choices=sorted(VARIANTS), default=sorted(VARIANTS))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=512, help="square input side (v2 needs 512; smaller "
                        "sizes run v2 on 512 x SIZE strips)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=None,
                        help="default: fp32 on CPU; fp32 fp16 bf16 (autocast) on CUDA")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--dcn", choices=["both", "ours", "torchvision"], default=None,
                        help="deformable-convolution kernel (default: both on CPU, ours elsewhere; "
                        "off CPU ours is torchvision's)")
    parser.add_argument("--quick", action="store_true", help="256x256, batch 1, 1 warm-up + 1 timed run")
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch_sizes, args.repeats, args.warmup = 256, [1], 1, 1
    if args.dcn is None:
        args.dcn = "both" if args.device == "cpu" else "ours"
    if args.dtypes is None:
        args.dtypes = ["fp32", "fp16", "bf16"] if args.device.startswith("cuda") else ["fp32"]
    return args


def time_restore(model, x: torch.Tensor, options: dict, dtype: torch.dtype | None, repeats: int,
                 warmup: int) -> tuple[list[float], list[float]]:
    """Wall and process-CPU seconds per ``model.restore(x, **options)`` (inference mode, autocast
    to ``dtype`` if given). On a shared CPU the process time is the steadier figure."""
    device = x.device

    def forward():
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype) if dtype else nullcontext():
            model.restore(x, **options)

    def synchronize():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        forward()
    wall, cpu = [], []
    for _ in range(repeats):
        synchronize()
        start, start_cpu = time.perf_counter(), time.process_time()
        forward()
        synchronize()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return wall, cpu


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    load = f", loadavg {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else ""
    print(f"# torch {torch.__version__}, {name}{load}; size {args.size}, median of {args.repeats} after "
          f"{args.warmup} warm-up")
    kernels = ["torchvision", "ours"] if args.dcn == "both" else [args.dcn]
    print(f"{'model':<6}{'variant':<9}{'dtype':<6}{'dcn':<12}{'batch':>6}{'median s':>11}{'min s':>9}{'max s':>9}{'img/s':>9}{'cpu s':>9}")
    for model_name in args.models:
        model = (VQFRv1 if model_name == "v1" else VQFRv2)().eval().to(device)
        height = args.size if model_name == "v1" else 512
        for variant, options in VARIANTS[model_name]:
            for dtype_name in args.dtypes:
                for batch in args.batch_sizes:
                    x = torch.rand(batch, 3, height, args.size, device=device) * 2 - 1
                    medians = {}
                    for kernel in kernels:
                        with torchvision_kernel() if kernel == "torchvision" else nullcontext():
                            times, cpu = time_restore(model, x, options, DTYPES[dtype_name],
                                                      args.repeats, args.warmup)
                        median = medians[kernel] = statistics.median(times)
                        print(f"{model_name:<6}{variant:<9}{dtype_name:<6}{kernel:<12}{batch:>6}"
                              f"{median:>11.3f}{min(times):>9.3f}{max(times):>9.3f}"
                              f"{batch / median:>9.2f}{statistics.median(cpu):>9.1f}", flush=True)
                    if len(medians) == 2:
                        print(f"{'':<33}ours / torchvision kernel: "
                              f"{medians['torchvision'] / medians['ours']:.2f}x faster", flush=True)
    if load:
        print(f"# loadavg after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
