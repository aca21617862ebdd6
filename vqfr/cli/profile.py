"""``vqfr-eval profile``: parameters, FLOPs, latency, throughput, peak memory and the fast-path
check of the zoo models, beside the VQFR paper's stated figures."""
from __future__ import annotations

import json

from vqfr.cli.argtypes import device, file_path, non_negative_int, positive_int, positive_ints
from vqfr.errors import VqfrError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "profile", help="model size, FLOPs, latency and memory",
        description="Profile zoo models with synthetic weights (timings do not depend on the "
                    "weight values): total/trainable parameters per top-level module, FLOPs at "
                    "512 (FlopCounterMode, plus deformable convolutions counted analytically), "
                    "latency (median and spread), images/s, peak memory, and for fp16/bf16, "
                    "channels-last and torch.compile the PSNR of the output against fp32.")
    parser.add_argument("--method", action="append", default=[], metavar="MODEL",
                        help="zoo model (repeatable or comma separated; default: all)")
    parser.add_argument("--device", type=device, default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--dtype", default="fp32",
                        help="comma-separated: fp32, fp16, bf16 (autocast)")
    parser.add_argument("--batch-size", default="1", type=positive_ints, metavar="N[,N...]")
    parser.add_argument("--precision", default="exact", metavar="P[,P...]",
                        help="comma-separated vqfr.precision policies for the float32 work on "
                             "CUDA: exact (no TF32), official (PyTorch's defaults: TF32 "
                             "convolutions), tf32 (TF32 convolutions and matrix products); "
                             "each is timed with every dtype (default: exact)")
    parser.add_argument("--compile", action="store_true", help="also time torch.compile")
    parser.add_argument("--channels-last", action="store_true",
                        help="also time channels-last memory format")
    parser.add_argument("--size", type=positive_int, default=None,
                        help="timing input size (default 512; --quick: 64 where the model "
                             "accepts multiples of 32)")
    parser.add_argument("--flops-size", type=non_negative_int, default=512,
                        help="input size for the FLOP count (0: skip)")
    parser.add_argument("--repeats", type=positive_int, default=None,
                        help="timed calls (default 5)")
    parser.add_argument("--warmup", type=non_negative_int, default=None,
                        help="untimed calls (default 2)")
    parser.add_argument("--quick", action="store_true",
                        help="1 warm-up, 2 timed calls, small inputs where possible")
    parser.add_argument("--json", type=file_path, metavar="OUT.json", help="write the full record")
    parser.set_defaults(func=profile_command)


def _print(record: dict) -> None:
    from vqfr.report.specs import load_spec

    print(f"device: {record['device_name']} ({record['device']}, torch {record['torch']}, "
          f"{record['threads']} threads); weights: {record['weights']}")
    for model in record["models"]:
        flops = model.get("flops")
        line = (f"{model['model']}: {model['params']:,} params ({model['trainable_params']:,} "
                "trainable)")
        if flops:
            line += (f"; {flops['flopcounter'] / 1e9:.1f} GFLOPs + {flops['deform_conv2d'] / 1e9:.1f}"
                     f" DCN = {flops['total'] / 1e9:.1f} GFLOPs at {flops['size']}x{flops['size']}")
        print(line)
        for s in model["settings"]:
            extra = [f"{s['dtype']} b{s['batch_size']} {s['size']}px"]
            extra += ["channels-last"] * s["channels_last"] + ["compiled"] * s["compile"]
            if s["precision"] != "exact":
                extra.append(f"precision {s['precision']}")
            if "error" in s or "skipped" in s:
                print(f"  {' '.join(extra)}: {s.get('error') or 'skipped: ' + s['skipped']}")
                continue
            lat = s["latency_s"]
            mem = (f", peak {s['peak_memory_bytes'] / 2 ** 20:.0f} MiB ({s['memory_kind']})"
                   if s.get("peak_memory_bytes") is not None else "")
            psnr = f", PSNR vs fp32 {s['psnr_vs_fp32']:.2f} dB" if s["psnr_vs_fp32"] else ""
            achieved = (f", {s['achieved_flops_per_s'] / 1e12:.2f} TFLOP/s"
                        if s.get("achieved_flops_per_s") else "")
            print(f"  {' '.join(extra)}: {lat['median']:.4f} s [{lat['min']:.4f}-{lat['max']:.4f}]"
                  f", {s['images_per_s']:.2f} img/s{mem}{achieved}{psnr}")
    spec = load_spec("vqfr_efficiency")
    for row in spec.rows:
        cells = {m: row.values[("", m)] for m in spec.metrics}
        print(f"paper ({row.label}, {row.extra.get('device')}): {cells['params_m'].value} M params,"
              f" {cells['tflops'].value} TFLOPs, {cells['latency_s'].value} s per "
              f"{row.extra.get('input_size')}px image [{cells['params_m'].source}]")


def profile_command(args) -> int:
    from vqfr.run.methods import split_methods
    from vqfr.studies.profile import profile
    from vqfr.precision import PRECISIONS
    from vqfr.run.restorer import DTYPES
    from vqfr.zoo import list_models

    models = split_methods(args.method) or list_models()
    unknown = sorted(set(models) - set(list_models()))
    if unknown:
        raise VqfrError(f"unknown model(s) {', '.join(unknown)}; known: "
                        f"{', '.join(list_models())}")
    dtypes = [d for d in args.dtype.split(",") if d]
    if set(dtypes) - set(DTYPES):
        raise VqfrError(f"--dtype takes {', '.join(DTYPES)}, got {args.dtype!r}")
    precisions = [p for p in args.precision.split(",") if p]
    if not precisions or set(precisions) - set(PRECISIONS):
        raise VqfrError(f"--precision takes {', '.join(PRECISIONS)}, got {args.precision!r}")
    record = profile(models, device=args.device, dtypes=dtypes, batch_sizes=args.batch_size,
                     channels_last=args.channels_last, compile=args.compile, size=args.size,
                     flops_size=args.flops_size or None,
                     warmup=args.warmup if args.warmup is not None else (1 if args.quick else 2),
                     repeats=args.repeats if args.repeats is not None else (2 if args.quick else 5),
                     quick=args.quick, precisions=precisions)
    _print(record)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=1))
        print(f"profile: {args.json}")
    return 0
