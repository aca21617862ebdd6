"""One pass vs the official scripts' way, on the CelebA-Test metric set.

A paired set is synthesised from the real faces in ../shared/faces (``vqfr.data.degradation``,
CelebA-Test-style degradation), restored with one model or several (``--model a,b,lq``;
synthetic weights) and measured with
LPIPS, FID, NIQE, Deg., PSNR and SSIM (metric networks with synthetic weights too: the timings are
what matter here, the values only check that both ways agree). Two ways, same arithmetic:

- **ours**: ``vqfr-eval run`` (``run_benchmark``): each image decoded once, restored in batches,
  written by writer threads, and every metric updated from the in-memory uint8 result;
- **official**: restore and save image by image (BasicSR test / inference scripts), then one script
  per metric re-reading the folders image by image (``calculate_psnr_ssim.py`` computes PSNR and
  SSIM in one loop; ``calculate_fid_folder.py`` batches 64), building its networks afresh
  (``--transcribed``: with the scripts' own NumPy NIQE and PSNR/SSIM and scipy's sqrtm).

Also timed: the metric stage alone (ours on ``folder:`` of the restored images vs the metric
scripts; ``--repeat`` alternating rounds, the fastest of each way kept, since on a shared machine
one round can be several times slower than the next) and a rerun of ours (everything cached).
Before any timing, every metric network and every model is built and run once, so neither way
pays the process's first-call costs (imports, oneDNN kernel set-up).

What ratio is reachable, and why (2 CPU cores, 512x512, batch 1): restoring is most of the
work both ways (VQFR v1: 20-30 s per image; the metrics about 3 s per image, 85 % of it
LPIPS-VGG at 512, two VGG16 passes per pair). Ours restores with the same arithmetic, through the
same convolutions, except that the TWMs' deformable convolutions run on ``vqfr.archs.deform``'s
CPU path (torchvision's result bit for bit, about 4x faster than its single-threaded CPU kernel,
which the official way keeps: ``torchvision_kernel()``). Beyond that, ours can only save what the
official way does more than once: (a) decoding every image again in each of the five scripts
(about 20 ms per PNG), (b) building the networks once per script, (c) with several methods, the
ground-truth half of LPIPS, computed once per batch for all of them, and on a rerun everything
(restored images and per-batch metric states are reused). By default the official way here runs our metric
implementations, so the speed-ups of NIQE (3.9x) and the Fréchet distance (11x, about 50 s of
``sqrtm`` per FID in the official script) are not counted: the ratio is conservative
(``--transcribed`` counts them). So with
VQFR v1 a first pass is about 1.2-1.4x the official way, bounded by the
share of restoration: the ratio cannot pass (restore + metrics) / restore without changing the
numbers (bf16 moves VQFR's output by up to 0.17; channels-last is slower on this CPU). The large
ratio is the rerun, and adding a method or a metric without redoing the rest. The machine is
shared, so ratios within one run are what count, and the fastest of ``--repeat`` rounds.
Usage::

    python benchmarks/bench_pipeline.py            # 24 faces (about an hour on 2 CPU cores)
    python benchmarks/bench_pipeline.py --quick    # 4 faces
    python benchmarks/bench_pipeline.py --quick --model vqfr-v2   # a cheaper restoration
    python benchmarks/bench_pipeline.py --quick --model vqfr-v2,gfpgan-v1.4,lq   # several
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

from vqfr.archs.deform import torchvision_kernel
from vqfr.data.degradation import synthesize
from vqfr.data.images import list_images, read_image
from vqfr.metrics.collection import MetricCollection
from vqfr.run.benchmark import RunConfig, run_benchmark
from vqfr.run.methods import parse_method, parse_methods
from vqfr.run.restorer import Restorer
from vqfr.zoo import write_synthetic_checkpoint

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PAPER_METRICS = ["lpips", "fid", "niqe", "deg", "psnr", "ssim"]
# One official script per entry, in the order the VQFR README runs them.
OFFICIAL_SCRIPTS = {"psnr_ssim": ["psnr", "ssim"], "lpips": ["lpips"], "niqe": ["niqe"],
                    "fid": ["fid"], "deg": ["deg"]}


def synthetic_assets(folder: Path, methods: list[str],
                     niqe_params: Path = SHARED / "reference" / "metrics" / "niqe_pris_params.npz"
                     ) -> dict[str, Path]:
    """Synthetic files for the methods' models (zoo spellings such as
    ``vqfr-v2:fidelity_ratio=0``; ``lq`` has none) and the metric networks; the official NIQE
    parameters from the reference files."""
    from vqfr.archs.arcface import ResNetArcFace

    models = {m.name for m in map(parse_method, methods) if m.kind == "model"}
    assets = {name: write_synthetic_checkpoint(name, folder / f"{name}.pth", seed=1)
              for name in sorted(models)}
    assets |= {"arcface-resnet18": write_synthetic_checkpoint(
                  "arcface-resnet18", folder / "arcface.pth", seed=1, layout=ResNetArcFace()),
              "niqe-params": Path(niqe_params)}
    import torchvision

    with torch.device("meta"):
        vgg = torchvision.models.vgg16()
    assets["lpips-vgg16"] = write_synthetic_checkpoint("lpips-vgg16", folder / "vgg16.pth",
                                                       seed=1, layout=vgg.features)
    try:
        from vqfr.archs.inception import FIDInceptionV3
    except ImportError:
        return assets
    with torch.device("meta"):
        inception = FIDInceptionV3()
    assets["fid-inception"] = write_synthetic_checkpoint("fid-inception", folder / "incep.pth",
                                                         seed=1, layout=inception)
    return assets


def usable_metrics(assets: dict[str, Path]) -> tuple[list[str], dict]:
    metrics, skipped = [], {}
    for name in PAPER_METRICS:
        try:
            MetricCollection([name], assets=assets, options=metric_options([name]))
            metrics.append(name)
        except Exception as exc:  # not written yet, or its reference statistics are absent
            skipped[name] = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return metrics, skipped


def metric_options(names: list[str]) -> dict:
    """Without the FFHQ-512 statistics, FID compares with the GT images' features."""
    return {"fid": {"reference": "gt"}} if "fid" in names else {}


def as_batch(rgb) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()


def official_restore(data: Path, out: Path, spelling: str, assets: dict, device: str) -> float:
    """Restore + save one by one (BasicSR inference, torchvision's deformable convolution
    kernel, as the official code calls it); returns the seconds. ``lq``: the input images are
    the results, nothing to do."""
    method = parse_method(spelling)
    if method.kind != "model":
        shutil.copytree(data / "lq", out)
        return 0.0
    start = time.perf_counter()
    restorer = Restorer(method, assets, device=device)
    out.mkdir(parents=True, exist_ok=True)
    with torchvision_kernel():
        for path in list_images(data / "lq"):
            bgr = cv2.imread(str(path))
            restored = restorer(as_batch(bgr[:, :, ::-1].copy()))[0]
            restored = restored.permute(1, 2, 0).cpu().numpy()
            cv2.imwrite(str(out / f"{path.stem}.png"), restored[:, :, ::-1])
    return time.perf_counter() - start


def official_metrics(data: Path, restored_dir: Path, metrics: list[str], assets: dict,
                     device: str, transcribed: bool = False,
                     frechet: str = "sqrtm") -> tuple[dict[str, float], dict[str, float]]:
    """One folder-reading loop per metric script: (seconds per script, values).

    The networks (LPIPS, Inception, ArcFace) are ours on ``device`` either way, image by image
    (Inception in batches of 64). ``transcribed``: also the scripts' own arithmetic where it
    differs from ours in speed: NIQE and PSNR/SSIM by ``bench_metrics``' NumPy transcriptions
    of the official code on the CPU, and the Fréchet distance by ``frechet`` ("sqrtm": scipy's,
    as the official script; timed apart as ``fid_frechet``, a cost per set, not per image).
    Otherwise our implementations, which makes the official way faster than it is."""
    times: dict[str, float] = {}
    values: dict[str, float] = {}
    for script, names in OFFICIAL_SCRIPTS.items():
        names = [n for n in names if n in metrics]
        if not names:
            continue
        start = time.perf_counter()
        restored_files, gt_files = list_images(restored_dir), list_images(data / "hq")
        if transcribed and script in ("psnr_ssim", "niqe"):
            values.update(_transcribed_script(script, names, restored_files, gt_files, assets))
            times[script] = time.perf_counter() - start
            continue
        collection = MetricCollection(names, assets=assets, device=device,
                                      options=metric_options(names))
        if script == "fid":   # SingleImageDataset + DataLoader(batch_size=64), GT stats too
            for begin in range(0, len(restored_files), 64):
                chunks = [files[begin:begin + 64] for files in (restored_files, gt_files)]
                restored, gt = (torch.cat([as_batch(read_image(p)) for p in c]) for c in chunks)
                collection.update(restored, gt, torch.arange(begin, begin + len(chunks[0])))
        else:                 # zip(sorted(glob(restored)), sorted(glob(gt))), one pair at a time
            for index, (r, g) in enumerate(zip(restored_files, gt_files)):
                collection.update(as_batch(read_image(r)), as_batch(read_image(g)),
                                  torch.tensor([index]))
        if transcribed and script == "fid":
            from vqfr.metrics.fid import feature_statistics
            from vqfr.metrics.frechet import frechet_distance

            times[script] = time.perf_counter() - start
            start = time.perf_counter()
            fid = collection["fid"]
            values["fid"] = frechet_distance(*feature_statistics(fid.ordered_features()),
                                             *fid.reference_statistics()[:2], method=frechet)
            times["fid_frechet"] = time.perf_counter() - start
            continue
        values.update({n: r.value for n, r in collection.compute().items()})
        times[script] = time.perf_counter() - start
    return times, values


def _transcribed_script(script: str, names: list[str], restored_files: list[Path],
                        gt_files: list[Path], assets: dict) -> dict[str, float]:
    """calculate_psnr_ssim.py / calculate_niqe.py in NumPy (``bench_metrics``), image by
    image from ``cv2.imread``: the mean of each metric."""
    import numpy as np
    from bench_metrics import niqe, official_psnr_ssim

    if script == "niqe":
        with np.load(assets["niqe-params"]) as data:
            params = {k: data[k] for k in data.files}
        return {"niqe": float(np.mean([niqe(cv2.imread(str(p)), params)
                                       for p in restored_files]))}
    pairs = np.array([official_psnr_ssim(cv2.imread(str(g)), cv2.imread(str(r)))
                      for r, g in zip(restored_files, gt_files)])
    return {name: float(pairs[:, column].mean())
            for column, name in enumerate(("psnr", "ssim")) if name in names}


def warm_up(data: Path, methods: list[str], metrics: list[str], assets: dict,
            device: str) -> None:
    """Build every metric network and run it on one pair, and every model on one image (both
    deformable-convolution kernels), untimed: neither way then pays first-call costs."""
    collection = MetricCollection(metrics, assets=assets, device=device,
                                  options=metric_options(metrics))
    pair = [as_batch(read_image(list_images(data / d)[0])) for d in ("lq", "hq")]
    collection.update(*pair, torch.tensor([0]))
    for method in parse_methods(methods, {"seed": 0}):
        if method.kind == "model":
            restorer = Restorer(method, assets, device=device)
            restorer(pair[0])
            with torchvision_kernel():
                restorer(pair[0])


def identical_images(ours_dir: Path, official_dir: Path) -> tuple[int, int]:
    """(pixel-identical, compared) restored PNGs of ours (``ours_dir/<dataset>/<slug>``) and
    the official way, by stem."""
    official = {p.stem: p for p in list_images(official_dir)}
    ours = [p for p in ours_dir.glob("images/*.png") if p.stem in official]
    same = sum(bool((read_image(p) == read_image(official[p.stem])).all()) for p in ours)
    return same, len(official)


def timed_run(**kwargs) -> tuple[float, list[dict]]:
    """Seconds and each method's metric values."""
    start = time.perf_counter()
    report = run_benchmark(RunConfig(**kwargs))
    seconds = time.perf_counter() - start
    if len(report.summaries) != len(kwargs["methods"]):
        raise SystemExit(f"the run produced no result: {report.failed or report.skipped}")
    return seconds, [summary["metrics"] for summary in report.summaries]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="4 faces instead of 24")
    parser.add_argument("--images", type=int, default=None)
    parser.add_argument("--model", default="vqfr-v1",
                        help="zoo model spelling, or several comma-separated (lq for the input "
                        "row): every method is restored and measured both ways (default: "
                        "vqfr-v1; vqfr-v2 is cheaper)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="restoration batch (default 1: fastest for 512x512 on CPU)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternating rounds of the metric stage; the fastest kept")
    parser.add_argument("--keep", type=Path, default=None, help="keep the work folder here")
    parser.add_argument("--transcribed", action="store_true",
                        help="official way with the scripts' own NumPy NIQE, PSNR/SSIM and "
                             "scipy sqrtm (bench_metrics' transcriptions) instead of ours")
    args = parser.parse_args()
    count = args.images or (4 if args.quick else 24)
    faces = sorted(p for p in (SHARED / "faces").glob("*.png"))[:count]
    if len(faces) < count:
        raise SystemExit(f"need {count} faces in {SHARED / 'faces'}, found {len(faces)}")

    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_pipeline_"))
    (work / "src").mkdir(parents=True, exist_ok=True)
    for face in faces:
        shutil.copy(face, work / "src" / face.name)
    synthesize(work / "src", work / "data", seed=0)
    methods = [m for m in args.model.split(",") if m]
    slugs = [m.slug for m in parse_methods(methods, {"seed": 0})]   # as run_benchmark names them
    assets = synthetic_assets(work / "weights", methods)
    metrics, skipped = usable_metrics(assets)
    for name, why in skipped.items():
        print(f"note: {name} left out ({why})")
    print(f"{count} faces, {', '.join(methods)} (synthetic weights), metrics "
          f"{','.join(metrics)}, {args.device}, {torch.get_num_threads()} threads, load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    warm_up(work / "data", methods, metrics, assets, args.device)

    common = dict(dataset=str(work / "data"), metrics=metrics, device=args.device,
                  batch_size=args.batch_size, assets=assets, quiet=True,
                  metric_options=metric_options(metrics))
    ours, our_values = timed_run(methods=methods, out=work / "ours", **common)
    rerun, _ = timed_run(methods=methods, out=work / "ours", **common)
    official_dirs = [work / "official" / slug for slug in slugs]
    official_restore_s = sum(official_restore(work / "data", folder, method, assets, args.device)
                             for method, folder in zip(methods, official_dirs, strict=True))
    official_rounds, ours_rounds = [], []
    for round_ in range(max(1, args.repeat)):
        times: dict[str, float] = {}
        official_values = []
        for folder in official_dirs:         # every script once per method's folder
            method_times, values = official_metrics(work / "data", folder, metrics, assets,
                                                    args.device, transcribed=args.transcribed)
            official_values.append(values)
            for script, seconds in method_times.items():
                times[script] = times.get(script, 0.0) + seconds
        official_rounds.append(times)
        ours_rounds.append(timed_run(methods=[f"folder:{f}" for f in official_dirs],
                                     out=work / f"folder{round_}", **common)[0])
    official_times = min(official_rounds, key=lambda t: sum(t.values()))
    official_metrics_s, ours_metrics = sum(official_times.values()), min(ours_rounds)
    official = official_restore_s + official_metrics_s
    ours_restore_s = ours - ours_metrics   # the pass less its metric stage (fastest round)
    same = [identical_images(work / "ours" / "data" / slug, folder)
            for slug, folder in zip(slugs, official_dirs, strict=True)]
    same = (sum(s[0] for s in same), sum(s[1] for s in same))

    print(f"\nload average now {os.getloadavg()[0]:.1f}")
    print(f"official way (s): restore+save {official_restore_s:.1f}, " + ", ".join(
        f"{k} {v:.1f}" for k, v in official_times.items()))
    print("metric stage rounds (s): official " + ", ".join(
        f"{sum(t.values()):.1f}" for t in official_rounds) + "; ours " + ", ".join(
        f"{t:.1f}" for t in ours_rounds))
    print(f"{'':34}{'ours (s)':>10}{'official (s)':>14}{'ratio':>8}")
    for label, a, b in (("restore + all metrics", ours, official),
                        ("restoration (pass - metric stage)", ours_restore_s, official_restore_s),
                        ("metric stage only (fastest round)", ours_metrics, official_metrics_s),
                        ("rerun, all cached", rerun, official)):
        ratio = f"{b / a:7.2f}x" if a > 0 and b > 0 else "      -"
        print(f"{label:34}{a:10.1f}{b:14.1f}{ratio}")
    print(f"restored PNGs identical both ways: {same[0]} of {same[1]}")
    if ours_restore_s > 0 and official_restore_s > 0:
        print(f"upper bound of the first-pass ratio, were our metric stage free: "
              f"{official / ours_restore_s:.2f}x (and {official / official_restore_s:.2f}x "
              "with the official restoration speed)")
    print("\nvalues (ours / official way):")
    for slug, ours_by_metric, official_by_metric in zip(slugs, our_values, official_values,
                                                        strict=True):
        for name in metrics:
            a, b = float(ours_by_metric[name]), float(official_by_metric[name])
            print(f"  {slug:12} {name:6} {a:.8g} / {b:.8g}  (|diff| {abs(a - b):.2g})")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
