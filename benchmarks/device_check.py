#!/usr/bin/env python3
"""The suite on a GPU in one prepared command: equal to the CPU goldens, fast, and measured.

Here, beside ../shared (copies the reference files this check reads into ``.devref/`` and the
wheels the GPU image lacks into ``.whl/``, both git-ignored)::

    benchmarks/device_prep.sh

On the GPU machine, in the repository root, with ``.devref`` and ``.whl`` carried along (one
command; the check itself keeps to ``--budget``, 420 s by default, and ``timeout`` is the
backstop)::

    set -o pipefail; python3 -m pip install -q --no-index --no-deps --no-compile \\
        --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \\
        && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 \\
        || exit; timeout 560 python3 benchmarks/device_check.py --device cuda \\
        --reference .devref/reference --json $OUT/device_check.json 2>&1 | tee $OUT/device_check.log

A CPU dry run at tiny sizes (tests/test_device_check.py runs it, so the script cannot rot)::

    python benchmarks/device_check.py --quick --device cpu --json /tmp/device_check.json

Sections, in order; each gets its share of the time left, and what does not fit is recorded as
skipped (``--sections`` runs a subset, e.g. to rerun one after a fix):

1. environment: GPU, driver, versions, the TF32 flags' defaults;
2. limits: the machine's achieved FLOP/s on a large matrix product and convolution per dtype
   (fp32 exact, TF32, fp16, bf16): what bounds the model timings;
3. models: VQFR v1/v2, GFPGAN, CodeFormer (the reference synthetic weights, as
   tests/goldens.py builds them) against the CPU goldens under ``--precision exact``, PSNR and
   max|Δ| against the reference README's tolerances, and how far ``official`` (TF32
   convolutions) moves each output;
4. metrics: LPIPS, FID features, PSNR/SSIM and Deg. on the device against the goldens and the
   CPU, NIQE's torch mode on the device against its official mode (on the CPU), and how far
   ``official`` moves each; LMD's AWing FAN under ``official`` (it keeps IEEE float32 for
   itself): landmarks equal to the golden's, LMD per pair within 1e-9, heatmaps vs the CPU,
   and its speed batched against the official one-image loop (``bench_lmd``);
5. speed: ``vqfr-eval profile`` rows per model, dtype, precision and batch size (images/s,
   latency, peak memory, achieved FLOP/s, PSNR against exact fp32);
6. kernels: torch.profiler's top kernels of a VQFR v1 forward (bf16 and exact fp32);
7. protocol: synthesised 512² faces, VQFR v1 + six of CelebA-Test's seven metrics (LMD is not
   in ``bench_pipeline``'s official way yet, so not timed) in one pass, its
   rerun, and the official way on the same machine (``bench_pipeline``: restore image by image,
   then one script per metric with the scripts' own NumPy NIQE and PSNR/SSIM and scipy's
   sqrtm), GPU busy %, extrapolated to 3000 images;
8. extras: channels-last, cuDNN benchmark mode and torch.compile for VQFR v1 bf16;
9. targets: each target of issue 16 with pass/fail and what bounds it.

The JSON record is rewritten after every section, so a run cut short keeps what it measured.
Exit status 1 when an equivalence check failed or a section raised, else 0 (targets are
benchmarks: they are reported, not enforced).
"""
from __future__ import annotations

import os

# cuBLAS reads this when it starts, before any section: runs set it too (make_deterministic)
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import argparse  # noqa: E402
import importlib  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import asdict, dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Callable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]   # the package, and tests/goldens.py

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from vqfr.precision import precision, tf32_flags  # noqa: E402
from vqfr.run.restorer import make_deterministic  # noqa: E402

SCHEMA = "vqfr-eval/device-check/1"
PROTOCOL_IMAGES = 3000          # CelebA-Test
KINDS = ("face", "blur", "down")

# What the check reads under --reference; ``--prepare`` copies exactly these (goldens reduced
# to the entries compared here: whole, they would not fit what travels to a GPU machine).
REFERENCE_FILES = (
    "synth_weights.py", "vqfr_v1/manifest.json", "vqfr_v2/manifest.json",
    "gfpgan_v1.4/manifest.json", "codeformer/manifest.json", "arcface_resnet18/manifest.json",
    "metrics/metrics_golden_public.json", "metrics/niqe_pris_params.npz",
    "metrics/vgg16_features_manifest.json", "metrics/fid_inception_manifest.json",
    "metrics/fid_features_public.pt", "awing_fan/manifest.json")
VQFR_V1_ENTRIES = ("face", "seed", "input", "outputs/main_dec", "codes/indices",
                   "intermediates/enc_Level_32", "intermediates/z_conv")
GOLDEN_ENTRIES = {
    "vqfr_v1/golden_seed1.pt": VQFR_V1_ENTRIES,
    "vqfr_v1/golden_seed1_small.pt": VQFR_V1_ENTRIES,
    "vqfr_v2/golden_seed1.pt": ("face", "seed", "input", "outputs/main_dec_fr0.0",
                                "outputs/main_dec_fr1.0", "codes/indices",
                                "intermediates/enc_feat", "intermediates/quant_logit"),
    "gfpgan_v1.4/golden_seed1.pt": ("seed", "inputs/x", "outputs/image",
                                    "outputs/image_random_noise"),
    "awing_fan/golden_seed1.pt": ("faces", "inputs/gt_input", "inputs/deg_input",
                                  "outputs/gt_landmarks", "outputs/deg_landmarks",
                                  "outputs/gt_error", "outputs/deg_error", "outputs/gt_argmax",
                                  "outputs/deg_argmax", "outputs/lmd"),
    "codeformer/golden_seed1.pt": ("seed", "inputs/x", "outputs/out_w0.0", "outputs/out_w0.5",
                                   "outputs/out_w1.0", "outputs/logits", "outputs/lq_feat",
                                   "codes"),
}

# Issue 16's targets (one H100, 512x512): name -> (threshold, higher is better)
TARGETS = {"vqfr-v1 bf16 images/s": (100.0, True),
           "vqfr-v1 exact fp32 images/s": (15.0, True),
           "metric stage vs the official scripts (x)": (10.0, True),
           "CelebA-Test protocol, 3000 images (s)": (180.0, False)}


# ---- the run: sections, budget, record ------------------------------------------------------
class Check:
    """The record being built, the time budget and what the sections share."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.device = torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.reference = Path(args.reference)
        self.shared = self.reference.parent             # golden_inputs: reference/ + faces/
        self.started = time.monotonic()
        self.end = self.started + args.budget
        self.deadline = self.end
        self.failures: list[str] = []
        self.skipped: list[str] = []
        self.partial: dict[str, Any] = {}     # what a section measured before it raised
        self.models: dict[str, torch.nn.Module] = {}   # zoo models built by zoo_model()
        self.record: dict[str, Any] = {
            "schema": SCHEMA, "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "quick": self.quick, "device": str(self.device), "budget_s": args.budget,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "sections": {}}

    def time_left(self) -> float:
        return self.deadline - time.monotonic()

    def fits(self, seconds: float, what: str) -> bool:
        """Whether work of about ``seconds`` fits the section's deadline; if not, note it."""
        if time.monotonic() + seconds <= self.deadline:
            return True
        self.skipped.append(f"{what} (needs ~{seconds:.0f} s, {max(self.time_left(), 0):.0f} s "
                            "left)")
        return False

    def expect(self, name: str, ok: bool) -> bool:
        if not ok:
            self.failures.append(name)
        return ok

    def run(self, sections: list[tuple[str, Callable[[Check], dict], float]]) -> None:
        for position, (name, function, share) in enumerate(sections):
            now = time.monotonic()
            shares = sum(s for _, _, s in sections[position:])
            self.deadline = now + max(self.end - now, 0) * (share / shares if shares else 1)
            self.skipped, self.partial = [], {}
            print(f"== {name} ({max(self.deadline - now, 0):.0f} s)", flush=True)
            entry: dict[str, Any] = {}
            try:
                entry["result"] = function(self)
                entry["status"] = "ok"
            except (Exception, SystemExit) as exc:     # bench_pipeline exits on a failed run
                entry["status"] = "error"
                entry["error"] = "".join(traceback.format_exception(exc, limit=12))
                entry["result"] = self.partial
                self.failures.append(f"section {name} raised {type(exc).__name__}")
                print(entry["error"], file=sys.stderr)
            entry["seconds"] = round(time.monotonic() - now, 2)
            entry["skipped"] = self.skipped
            self.record["sections"][name] = entry
            self.save()
            if self.cuda:
                torch.cuda.empty_cache()

    def result(self, section: str) -> dict:
        entry = self.record["sections"].get(section) or {}
        return entry.get("result") or {}

    def save(self) -> None:
        self.record["failures"] = self.failures
        self.record["elapsed_s"] = round(time.monotonic() - self.started, 2)
        path = Path(self.args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(_jsonable(self.record), indent=1))
        os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def zoo_model(check: Check, name: str) -> torch.nn.Module:
    """The zoo model ``name`` on the device with synthetic weights (seed 1), built once."""
    from vqfr.zoo import create_model

    if name not in check.models:
        check.models[name] = create_model(name, device=check.device, synthetic_seed=1)
    return check.models[name]


def synth_weights(reference: Path):
    """The reference synthetic-weights rule (reference/synth_weights.py) as a module."""
    spec = importlib.util.spec_from_file_location("reference_synth_weights",
                                                  reference / "synth_weights.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def synthetic_state(reference: Path, manifest: str, seed: int = 1) -> dict[str, torch.Tensor]:
    return synth_weights(reference).synth_state_dict(
        json.loads((reference / manifest).read_text()), seed)


# ---- 1. environment ---------------------------------------------------------------------------
def environment(check: Check) -> dict:
    import scipy
    import torchvision
    from importlib.metadata import PackageNotFoundError, version

    def package(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    info: dict[str, Any] = {
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "torchvision": torchvision.__version__,
        "numpy": np.__version__, "scipy": scipy.__version__, "opencv": cv2.__version__,
        "lpips": package("lpips"), "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "tf32_flags_default": tf32_flags(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "cudnn_benchmark": torch.backends.cudnn.benchmark, "commit": _git_commit()}
    if check.cuda:
        props = torch.cuda.get_device_properties(check.device)
        info |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}",
                 "gpu_memory_bytes": props.total_memory,
                 "multiprocessors": props.multi_processor_count,
                 "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                 "nvidia_smi": _nvidia_smi()}
    return info


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True,
                              text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _nvidia_smi() -> str | None:
    try:
        return subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm,"
             "power.limit", "--format=csv,noheader"], capture_output=True, text=True,
            timeout=20).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


# ---- 2. the machine's limits ------------------------------------------------------------------
# kind -> (tensor dtype, precision policy for float32)
ARITHMETIC = {"fp32 exact": (torch.float32, "exact"), "fp32 tf32": (torch.float32, "tf32"),
              "fp16": (torch.float16, "exact"), "bf16": (torch.bfloat16, "exact")}


def _achieved(function: Callable[[], Any], flops: float, device: torch.device,
              min_seconds: float) -> float:
    """FLOP/s of ``function`` (``flops`` per call): two warm-up calls, then as many as fill
    ``min_seconds`` (at least 3)."""
    function(), function()
    sync(device)
    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < min_seconds:
        function()
        calls += 1
        if calls % 3 == 0:
            sync(device)
    sync(device)
    return flops * calls / (time.perf_counter() - start)


def limits(check: Check) -> dict:
    n = 256 if check.quick else 8192
    batch, channels, size = (1, 16, 32) if check.quick else (32, 256, 128)
    result: dict[str, Any] = {"matmul": f"{n}x{n}x{n}",
                              "conv": f"3x3 conv, {batch}x{channels}x{size}x{size}, "
                                      f"{channels} filters"}
    for kind, (dtype, policy) in ARITHMETIC.items():
        if not check.fits(3, f"limits {kind}"):
            continue
        row: dict[str, Any] = {}
        try:
            with precision(policy), torch.inference_mode():
                a = torch.randn(n, n, device=check.device, dtype=dtype)
                b = torch.randn(n, n, device=check.device, dtype=dtype)
                row["matmul_flops_per_s"] = _achieved(lambda: a @ b, 2 * n ** 3, check.device,
                                                      0.05 if check.quick else 1.0)
                x = torch.randn(batch, channels, size, size, device=check.device, dtype=dtype)
                w = torch.randn(channels, channels, 3, 3, device=check.device, dtype=dtype)
                conv_flops = 2 * batch * channels * channels * 9 * size * size
                row["conv_flops_per_s"] = _achieved(
                    lambda: torch.nn.functional.conv2d(x, w, padding=1), conv_flops,
                    check.device, 0.05 if check.quick else 1.0)
        except RuntimeError as exc:        # e.g. a dtype the CPU has no kernel for
            row["error"] = str(exc).splitlines()[0]
        result[kind] = row
    return result


def best_flops(check: Check, kind: str) -> float | None:
    row = check.result("limits").get(kind) or {}
    values = [row.get(k) for k in ("matmul_flops_per_s", "conv_flops_per_s") if row.get(k)]
    return max(values) if values else None


# ---- 3. model equivalence ---------------------------------------------------------------------
@dataclass(frozen=True)
class Tolerance:
    max_abs: float | None          # None: must be equal (codes)
    min_psnr_db: float | None = None


EQUAL = Tolerance(None)
# reference README: VQFR images PSNR >= 90 dB and max|d| <= 5e-4, intermediates <= 1e-4;
# GFPGAN <= 1e-3; CodeFormer outputs and lq_feat <= 1e-3, logits <= 1e-4, codes equal
VQFR_IMAGE, VQFR_INTERMEDIATE = Tolerance(5e-4, 90.0), Tolerance(1e-4)
MAX_1E3, MAX_1E4 = Tolerance(1e-3), Tolerance(1e-4)


def _vqfr_v1(model, golden, device):
    out = model(golden["input"].to(device), branches=("main",))
    return {"main_dec": (out["main_dec"], golden["outputs"]["main_dec"], VQFR_IMAGE),
            "codes": (out["codes"], golden["codes"]["indices"], EQUAL),
            **{key: (out[key], golden["intermediates"][key], VQFR_INTERMEDIATE)
               for key in ("enc_Level_32", "z_conv")}}


def _vqfr_v2(model, golden, device):
    out = model(golden["input"].to(device), fidelity_ratios=(0.0, 1.0))
    return {**{f"main_dec_fr{r}": (out["main_dec"][r], golden["outputs"][f"main_dec_fr{r}"],
                                   VQFR_IMAGE) for r in (0.0, 1.0)},
            "codes": (out["codes"], golden["codes"]["indices"], EQUAL),
            **{key: (out[key], golden["intermediates"][key], VQFR_INTERMEDIATE)
               for key in ("enc_feat", "quant_logit")}}


def _gfpgan(model, golden, device):
    x = golden["inputs"]["x"].to(device)
    return {"image": (model(x)[0], golden["outputs"]["image"], MAX_1E3),
            "image_random_noise": (model.restore(x, noise="random", seed=golden["seed"]),
                                   golden["outputs"]["image_random_noise"], MAX_1E3)}


def _codeformer(model, golden, device):
    weights = (0.0, 0.5, 1.0)
    out = model.forward_sweep(golden["inputs"]["x"].to(device), weights)
    return {**{f"out_w{w}": (out.outputs[w], golden["outputs"][f"out_w{w}"], MAX_1E3)
               for w in weights},
            "logits": (out.logits, golden["outputs"]["logits"], MAX_1E4),
            "lq_feat": (out.lq_feat, golden["outputs"]["lq_feat"], MAX_1E3),
            "codes": (out.codes, golden["codes"], EQUAL)}


@dataclass(frozen=True)
class ModelGolden:
    label: str
    golden: str            # file under the reference folder
    manifest: str
    arch: str              # module:Class
    compare: Callable


MODEL_GOLDENS = (
    ModelGolden("vqfr-v1 128", "vqfr_v1/golden_seed1_small.pt", "vqfr_v1/manifest.json",
                "vqfr.archs.vqfr_v1:VQFRv1", _vqfr_v1),
    ModelGolden("vqfr-v1", "vqfr_v1/golden_seed1.pt", "vqfr_v1/manifest.json",
                "vqfr.archs.vqfr_v1:VQFRv1", _vqfr_v1),
    ModelGolden("vqfr-v2", "vqfr_v2/golden_seed1.pt", "vqfr_v2/manifest.json",
                "vqfr.archs.vqfr_v2:VQFRv2", _vqfr_v2),
    ModelGolden("gfpgan-v1.4", "gfpgan_v1.4/golden_seed1.pt", "gfpgan_v1.4/manifest.json",
                "vqfr.archs.gfpgan:GFPGANv1Clean", _gfpgan),
    ModelGolden("codeformer", "codeformer/golden_seed1.pt", "codeformer/manifest.json",
                "vqfr.archs.codeformer:CodeFormer", _codeformer),
)


def compare(actual: torch.Tensor, expected: torch.Tensor, tolerance: Tolerance) -> dict:
    from goldens import compare_to_golden

    actual = actual.detach().cpu()
    if tolerance.max_abs is None:
        differ = int((actual != expected).sum())
        return {"equal": differ == 0, "differing": differ, "ok": differ == 0}
    result = compare_to_golden(actual.float(), expected, tolerance.max_abs,
                               tolerance.min_psnr_db)
    return {"psnr_db": result.psnr_db, "max_abs": result.max_abs, "ok": result.ok,
            "tolerance": asdict(tolerance)}


def models(check: Check) -> dict:
    from goldens import read_golden, synthetic_model

    synth = synth_weights(check.reference)
    labels = ["vqfr-v1 128"] if check.quick else [m.label for m in MODEL_GOLDENS[1:]]
    result: dict[str, Any] = {}
    for spec in (m for m in MODEL_GOLDENS if m.label in labels):
        if not check.fits(4 if check.quick else 12, f"models {spec.label}"):
            continue
        golden = read_golden(check.reference, *spec.golden.split("/"))
        module, name = spec.arch.split(":")
        manifest = json.loads((check.reference / spec.manifest).read_text())
        model = synthetic_model(getattr(importlib.import_module(module), name), manifest,
                                synth, golden["seed"]).to(check.device)
        outputs = {}
        row: dict[str, Any] = {}
        for policy in ("exact", "official"):
            with precision(policy), torch.inference_mode():
                start = time.perf_counter()
                outputs[policy] = spec.compare(model, golden, check.device)
                sync(check.device)
                row[f"seconds_{policy}"] = time.perf_counter() - start
        row["exact_vs_golden"] = {
            key: compare(actual, expected, tolerance)
            for key, (actual, expected, tolerance) in outputs["exact"].items()}
        row["official_vs_golden"] = {
            key: compare(actual, expected, tolerance)
            for key, (actual, expected, tolerance) in outputs["official"].items()}
        # how far TF32 convolutions move each output (the paper's arithmetic vs the goldens')
        row["official_vs_exact"] = {
            key: compare(actual, outputs["exact"][key][0].detach().cpu(),
                         EQUAL if tolerance.max_abs is None else Tolerance(math.inf))
            for key, (actual, _, tolerance) in outputs["official"].items()}
        for key, value in row["exact_vs_golden"].items():
            check.expect(f"{spec.label} {key} exact vs golden", value["ok"])
        result[spec.label] = row
        del model, outputs
    if check.cuda and result:
        moved = any(v.get("max_abs", v.get("differing", 0)) > 0 for row in result.values()
                    for v in row["official_vs_exact"].values())
        result["tf32_changed_outputs"] = moved
        check.expect("TF32 policy has an effect on this GPU (official != exact)", moved
                    or torch.cuda.get_device_capability(check.device)[0] < 8)
    return result


# ---- 4. metrics -------------------------------------------------------------------------------
def _chunks(tensor: torch.Tensor, size: int):
    return [tensor[i:i + size] for i in range(0, len(tensor), size)]


def _metric_values(check: Check, device: torch.device, images: dict[str, torch.Tensor],
                   networks: dict[str, Any]) -> dict[str, Any]:
    """Per-image values of every metric on ``device``: LPIPS, PSNR, SSIM, Deg. (and the
    ArcFace embeddings) of each degraded kind against the face; FID features and NIQE in its
    batched torch mode for every kind."""
    from vqfr.metrics.identity import angle_degrees, cosine_float32, png_gray
    from vqfr.metrics.niqe import NIQE
    from vqfr.metrics.psnr_ssim import PSNR, SSIM

    lpips, inception, arcface = (networks[k] for k in ("lpips", "inception", "arcface"))
    niqe = NIQE(mode="torch", weights=check.reference / "metrics/niqe_pris_params.npz",
                device=device)
    psnr, ssim = PSNR(device=device), SSIM(device=device)
    face = images["face"]
    out: dict[str, Any] = {name: {} for name in ("lpips", "psnr", "ssim", "deg", "fid_features",
                                                 "niqe", "arcface")}
    with torch.inference_mode():
        for kind, x in images.items():
            out["fid_features"][kind] = torch.cat([inception.extract(c.to(device))
                                                   for c in _chunks(x, 8)])
            out["niqe"][kind] = torch.tensor(niqe.per_image(x.to(device)), dtype=torch.float64)
            out["arcface"][kind] = torch.from_numpy(arcface.embed(png_gray(x.to(device))))
            if kind == "face":
                continue
            out["lpips"][kind] = torch.cat([lpips.distances(a.to(device), b.to(device)).cpu()
                                            for a, b in zip(_chunks(x, 8), _chunks(face, 8))])
            out["psnr"][kind] = psnr.per_image(x.to(device), face.to(device)).cpu()
            out["ssim"][kind] = ssim.per_image(x.to(device), face.to(device)).cpu()
        for kind in out["lpips"]:
            out["deg"][kind] = torch.from_numpy(angle_degrees(cosine_float32(
                out["arcface"]["face"].numpy(), out["arcface"][kind].numpy())))
    return out


def _metric_networks(check: Check, device: torch.device) -> dict[str, Any]:
    from vqfr.archs.inception import FIDInceptionV3
    from vqfr.metrics.fid import FID
    from vqfr.metrics.identity import IdentityEmbedder
    from vqfr.metrics.lpips_vgg import LPIPS

    inception = FIDInceptionV3()
    inception.load_state_dict(synthetic_state(check.reference,
                                              "metrics/fid_inception_manifest.json"))
    return {"lpips": LPIPS(weights=synthetic_state(check.reference,
                                                   "metrics/vgg16_features_manifest.json"),
                           device=device),
            "inception": FID(reference="gt", model=inception.eval(), device=device),
            "arcface": IdentityEmbedder(synthetic_state(check.reference,
                                                        "arcface_resnet18/manifest.json"),
                                        device=device)}


def _max_abs(a, b) -> float:
    if isinstance(a, dict):
        return max(_max_abs(a[k], b[k]) for k in a)
    return float((torch.as_tensor(a).double().cpu() - torch.as_tensor(b).double().cpu())
                 .abs().max())


def _golden_metric(golden: dict, names: list[str], metric: str, kind: str) -> torch.Tensor:
    """Per-image golden values (official scripts, CPU) of the faces ``names``."""
    if metric in ("psnr", "ssim"):
        table = golden["psnr_ssim"]["rgb_cmv"]["per_image"]      # the paper's setting
        return torch.tensor([table[n][kind][metric] for n in names], dtype=torch.float64)
    table = {"lpips": golden["lpips"], "niqe": golden["niqe_official"]}[metric]["per_image"]
    return torch.tensor([table[n][kind] for n in names], dtype=torch.float64)


def _lmd_check(check: Check, count: int) -> dict:
    """The AWing FAN of the LMD metric on the device, under the run policy that would flip its
    argmaxes (``official``: TF32 convolutions), against the golden's landmarks (exactly: the
    network forces IEEE float32 for itself), the CPU's heatmaps and the per-pair LMD."""
    from vqfr.metrics.landmark import LandmarkDetector, heatmap_points, landmark_distance

    golden = torch.load(check.reference / "awing_fan/golden_seed1.pt", weights_only=False)
    state = synthetic_state(check.reference, "awing_fan/manifest.json")
    out = golden["outputs"]
    scale = np.array([512 / 64, 512 / 64])       # the golden faces are 512 x 512
    heatmaps, points = {}, {}
    for device in ([check.device, torch.device("cpu")] if check.cuda else [check.device]):
        net = LandmarkDetector({"state_dict": state}, device=device).net
        with precision("official"), torch.inference_mode():
            for side in ("gt", "deg"):
                x = golden["inputs"][f"{side}_input"][:count].to(device)
                heatmaps[device.type, side] = net.landmark_heatmaps(x).cpu()
                points[device.type, side] = heatmap_points(heatmaps[device.type, side])
    ours = check.device.type
    equal, pairs = True, []
    for side in ("gt", "deg"):
        found, raises = points[ours, side]
        for i in range(count):
            error = out[f"{side}_error"][i]
            if error is None:
                equal &= bool(raises[i] == -1 and np.array_equal(
                    found[i] * scale, out[f"{side}_landmarks"][i].numpy()))
            else:
                equal &= bool(raises[i] == int((out[f"{side}_argmax"][i] == 4095).nonzero()[0]))
    for i in range(count):
        if out["gt_error"][i] is None and out["deg_error"][i] is None:
            measured = landmark_distance(points[ours, "gt"][0][i] * scale,
                                         points[ours, "deg"][0][i] * scale)
            pairs.append(abs(measured - float(out["lmd"][i])))
    result = {"images": count, "landmarks_equal_golden": equal,
              "lmd_max_abs_vs_golden": max(pairs, default=0.0), "lmd_tolerance": 1e-9}
    check.expect("metric lmd landmarks vs golden (exact)", equal)
    check.expect("metric lmd per pair vs golden", result["lmd_max_abs_vs_golden"] <= 1e-9)
    if check.cuda:
        peak = max(float(heatmaps["cpu", s].abs().max()) for s in ("gt", "deg"))
        result["heatmaps_max_abs_vs_cpu_relative"] = max(
            _max_abs(heatmaps[ours, s], heatmaps["cpu", s]) for s in ("gt", "deg")) / peak
        result["heatmaps_tolerance_relative"] = 1e-5
        check.expect("metric lmd heatmaps vs cpu", result["heatmaps_max_abs_vs_cpu_relative"]
                     <= 1e-5)
    # speed: batched against the official one-image loop on the device (bench_lmd, same values)
    import bench_lmd

    pairs, batch = (2, 2) if check.quick else (24, 24)
    if check.fits(2 if check.quick else 15, "lmd speed"):
        result["speed"] = bench_lmd.measure(
            bench_lmd.read_pairs(check.shared / "faces", pairs), check.device, batch,
            1 if check.quick else 3)
    return result


def metrics(check: Check) -> dict:
    from goldens import golden_inputs

    from vqfr.metrics.niqe import NIQE

    golden, names, all_images = golden_inputs(str(check.shared))
    count = 1 if check.quick else len(names)
    kinds = KINDS[:2] if check.quick else KINDS      # quick: LPIPS at 512 costs seconds on CPU
    names = names[:count]
    images = {k: all_images[k][:count] for k in kinds}
    fid_golden = torch.load(check.reference / "metrics/fid_features_public.pt",
                            weights_only=False)
    networks = _metric_networks(check, check.device)
    values = {}
    for policy in ("exact", "official") if check.cuda else ("exact",):
        with precision(policy):
            values[policy] = _metric_values(check, check.device, images, networks)
    ours = values["exact"]
    # the CPU in the same run (a few images: the networks at 512 take seconds there)
    few = 2
    if check.cuda:
        cpu = _metric_values(check, torch.device("cpu"), {k: v[:few] for k, v in images.items()},
                             _metric_networks(check, torch.device("cpu")))
    else:
        cpu = ours                                     # the device is the CPU
    degraded = kinds[1:]

    def worst(metric: str, reference: Callable[[str], Any], limit: int | None = None,
              over=kinds) -> float:
        return max(_max_abs(ours[metric][k][:limit], reference(k)) for k in over)

    # the reference README's tolerances, per value
    checks = {
        "lpips vs golden": (worst("lpips", lambda k: _golden_metric(golden, names, "lpips", k),
                                  over=degraded), 1e-7),
        "fid features vs golden": (worst("fid_features",
                                         lambda k: fid_golden["features"][k][:count]), 1e-6),
        "psnr vs golden (dB)": (worst("psnr", lambda k: _golden_metric(golden, names, "psnr", k),
                                      over=degraded), 1e-4),
        "ssim vs golden": (worst("ssim", lambda k: _golden_metric(golden, names, "ssim", k),
                                 over=degraded), 1e-6),
        "lpips vs cpu": (worst("lpips", lambda k: cpu["lpips"][k][:few], few, degraded), 1e-7),
        "fid features vs cpu": (worst("fid_features", lambda k: cpu["fid_features"][k][:few],
                                      few), 1e-6),
        "arcface embeddings vs cpu": (worst("arcface", lambda k: cpu["arcface"][k][:few], few),
                                      3e-4),
        "deg vs cpu (degrees)": (worst("deg", lambda k: cpu["deg"][k][:few], few, degraded),
                                 2e-3),
    }
    result: dict[str, Any] = {"images": count, "kinds": list(kinds),
                              "cpu_images": min(few, count) if check.cuda else "same device"}
    result["checks"] = {name: {"max_abs": value, "tolerance": tol, "ok": value <= tol}
                        for name, (value, tol) in checks.items()}
    # NIQE: the official mode (always on the CPU) against the golden
    official_niqe = NIQE(weights=check.reference / "metrics/niqe_pris_params.npz")
    official = {k: torch.tensor(official_niqe.per_image(images[k]), dtype=torch.float64)
                for k in kinds}
    result["checks"]["niqe official mode vs golden"] = {
        "max_abs": max(_max_abs(official[k], _golden_metric(golden, names, "niqe", k))
                       for k in kinds), "tolerance": 1e-3}
    # the torch mode (on the device) computes the official float32 MSCN too: on the CPU the
    # two modes agree to 1e-7 (vqfr.metrics.niqe); here held to the official path's tolerance
    result["checks"]["niqe torch mode vs official mode"] = {
        "max_abs": max(_max_abs(ours["niqe"][k], official[k]) for k in kinds),
        "tolerance": 1e-3,
        "set_mean_max_abs": max(abs(float(ours["niqe"][k].mean() - official[k].mean()))
                                for k in kinds)}
    for row in result["checks"].values():
        row["ok"] = row["max_abs"] <= row["tolerance"]
    for name, row in result["checks"].items():
        check.expect(f"metric {name}", row["ok"])
    if "official" in values:      # TF32 convolutions in the metric networks
        moved = {metric: _max_abs(values["official"][metric], ours[metric])
                 for metric in ("lpips", "fid_features", "psnr", "ssim", "deg", "arcface",
                                "niqe")}
        mean_lpips = float(torch.cat(list(ours["lpips"].values())).abs().mean())
        moved["lpips_relative_to_mean"] = moved["lpips"] / max(mean_lpips, 1e-30)
        result["official_vs_exact"] = moved
    result["lmd"] = _lmd_check(check, 2 if check.quick else 4)
    return result


# ---- 5. speed ---------------------------------------------------------------------------------
def speed_settings(model: str, quick: bool) -> list:
    """Most important first (the budget cuts from the end)."""
    from vqfr.studies.profile import Setting

    if quick:     # the exact fp32 reference of batch 2 is then made on demand
        return [Setting("fp32", 1), Setting("bf16", 2)]
    kinds = [("fp32", "exact"), ("bf16", "exact"), ("fp16", "exact"), ("fp32", "tf32"),
             ("fp32", "official")]
    batches = (8, 32, 1) if model == "vqfr-v1" else (8, 32)
    return [Setting(dtype, batch, precision=policy) for batch in batches
            for dtype, policy in kinds]


def speed(check: Check) -> dict:
    from vqfr.studies.profile import profile_model

    names = ["vqfr-v1"] if check.quick else ["vqfr-v1", "vqfr-v2", "gfpgan-v1.4", "codeformer"]
    size = 64 if check.quick else 512
    result = check.partial
    result["size"] = size
    # seconds per image in exact fp32: VQFR v1's 2.3 TFLOP at half the machine's measured rate
    fp32 = best_flops(check, "fp32 exact")
    estimate = {"per_image": 0.05 if check.quick else (2 * 2.3e12 / fp32 if fp32 else 0.5)}

    def should_run(setting) -> bool:
        # warm-up + timed calls, each a forward of the batch
        seconds = 1 + 4 * setting.batch_size * estimate["per_image"] * (
            1 if setting.dtype == "fp32" else 0.5)
        return check.fits(seconds, f"speed {name} {setting}")

    for name in names:
        if not check.fits(10 if not check.quick else 2, f"speed {name}"):
            continue
        record = profile_model(name, check.device, speed_settings(name, check.quick), size,
                               size, warmup=1, repeats=3 if not check.quick else 2,
                               should_run=should_run, model=zoo_model(check, name))
        if name != "vqfr-v1":         # the later sections use VQFR v1 only
            check.models.pop(name)
        record.pop("params_by_module", None)
        record.get("flops", {}).pop("by_module", None)
        record.get("flops", {}).pop("by_op", None)
        result[name] = record
    return result


def best_speed(check: Check, model: str, dtype: str, policy: str = "exact",
               size: int = 512, batch_size: int | None = None) -> dict | None:
    """The fastest timing row of ``model`` in ``dtype`` under ``policy`` (speed and extras
    sections; a cuDNN-benchmark row is marked as such)."""
    rows = []
    for section in ("speed", "extras"):
        for key, record in check.result(section).items():
            if not (isinstance(record, dict) and key.split(" ")[0] == model):
                continue
            rows += [row | {"cudnn_benchmark": key.endswith("cudnn.benchmark")}
                     for row in record.get("settings", [])
                     if row.get("dtype") == dtype and row.get("precision") == policy
                     and row.get("size") == size and "images_per_s" in row
                     and batch_size in (None, row["batch_size"])]
    return max(rows, key=lambda r: r["images_per_s"], default=None)


# ---- 6. top kernels ---------------------------------------------------------------------------
def kernels(check: Check) -> dict:
    from torch.profiler import ProfilerActivity, profile

    from vqfr.run.restorer import DTYPES, to_model_input

    size, batch = (64, 1) if check.quick else (512, 8)
    model = zoo_model(check, "vqfr-v1")
    x = to_model_input(torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8,
                                     generator=torch.Generator().manual_seed(0))).to(check.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if check.cuda else [])
    result: dict[str, Any] = {"model": "vqfr-v1", "size": size, "batch_size": batch}
    for dtype in ("bf16", "fp32"):
        if not check.fits(5 if not check.quick else 2, f"kernels {dtype}"):
            continue
        autocast = torch.autocast(check.device.type, dtype=DTYPES[dtype],
                                  enabled=dtype != "fp32")
        with precision("exact"), torch.inference_mode(), autocast:
            model.restore(x)
            sync(check.device)
            with profile(activities=activities) as prof:
                model.restore(x)
                sync(check.device)
        result[dtype] = _top_kernels(prof, check.cuda)
    return result


def _top_kernels(prof, cuda: bool, top: int = 12) -> dict:
    def self_time(event) -> float:        # microseconds
        if not cuda:
            return event.self_cpu_time_total
        return (getattr(event, "self_device_time_total", None)
                or getattr(event, "self_cuda_time_total", 0))

    events = [e for e in prof.key_averages() if self_time(e) > 0]
    total = sum(self_time(e) for e in events) or 1.0
    events.sort(key=self_time, reverse=True)
    return {"total_ms": total / 1e3, "clock": "device" if cuda else "cpu",
            "top": [{"name": e.key[:120], "calls": e.count, "ms": self_time(e) / 1e3,
                     "share": self_time(e) / total} for e in events[:top]]}


# ---- 7. the whole protocol --------------------------------------------------------------------
class BusySampler:
    """GPU busy % (NVML, through torch.cuda.utilization) sampled while the block runs; None off
    CUDA or without NVML."""

    def __init__(self, device: torch.device, period_s: float = 0.1):
        self.device, self.period_s = device, period_s
        self.samples: list[float] = []
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            try:
                self.samples.append(float(torch.cuda.utilization(self.device)))
            except Exception:       # no NVML (pynvml) on this machine: nothing to sample
                return

    def __enter__(self) -> BusySampler:
        if self.device.type == "cuda":
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.device.type == "cuda":
            self._thread.join()

    @property
    def mean(self) -> float | None:
        return sum(self.samples) / len(self.samples) if self.samples else None


@contextmanager
def timed(into: dict, key: str, device: torch.device):
    sampler = BusySampler(device)
    start = time.perf_counter()
    with sampler:
        yield
    into[key] = {"seconds": time.perf_counter() - start, "gpu_busy_percent": sampler.mean}


def _write_sources(faces: list[Path], folder: Path, count: int, size: int) -> None:
    """``count`` distinct 512x512 (``size``) faces from the real ones: the k-th reuse of a face is
    mirrored and shifted, so no two images are the same and each gets its own degradation."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(index: int) -> None:
        face = cv2.imread(str(faces[index % len(faces)]))
        if size != face.shape[0]:
            face = cv2.resize(face, (size, size), interpolation=cv2.INTER_AREA)
        round_ = index // len(faces)
        if round_ % 2:
            face = face[:, ::-1]
        face = np.roll(face, 4 * (round_ // 2), axis=1)
        cv2.imwrite(str(folder / f"{index:05d}.png"), np.ascontiguousarray(face))

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(write, range(count)))


def _synthesize(source: Path, data: Path) -> None:
    from vqfr.data.degradation import synthesize

    shards = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(shards) as pool:
        list(pool.map(lambda k: synthesize(source, data, seed=0, shard=(k, shards)),
                      range(shards)))


def _per_image_costs(face: Path, assets: dict) -> dict[str, float]:
    """Seconds per 512x512 image of the official way's CPU scripts (NumPy NIQE, PSNR/SSIM),
    measured on one face, to size the set to the time left."""
    from bench_metrics import niqe, official_psnr_ssim

    hq = cv2.imread(str(face))
    lq = cv2.GaussianBlur(hq, (0, 0), 2)
    with np.load(assets["niqe-params"]) as npz:
        params = {k: npz[k] for k in npz.files}
    costs = {}
    for name, function in (("niqe", lambda: niqe(lq, params)),
                           ("psnr_ssim", lambda: official_psnr_ssim(hq, lq))):
        start = time.perf_counter()
        function()
        costs[name] = time.perf_counter() - start
    return costs


def protocol(check: Check) -> dict:
    import bench_pipeline as pipeline

    quick = check.quick
    size = 64 if quick else 512
    batch = 2 if quick else check.args.batch_size
    workers = 2 if quick else min(8, os.cpu_count() or 2)
    device = str(check.device)
    methods = ["vqfr-v1"]
    work = Path(tempfile.mkdtemp(prefix="device_check_"))
    result = check.partial
    result |= {"size": size, "batch_size": batch, "workers": workers, "dtype": "fp32",
               "precision": "exact", "methods": methods}
    try:
        faces = sorted((check.shared / "faces").glob("*.png"))
        assets = pipeline.synthetic_assets(work / "weights", methods,
                                           niqe_params=check.reference /
                                           "metrics/niqe_pris_params.npz")
        # size the set: measured per-image costs, the restoration speed from the speed section
        costs = _per_image_costs(faces[0], assets)
        b1 = best_speed(check, "vqfr-v1", "fp32", size=size, batch_size=1)
        restore_s = 1 / b1["images_per_s"] if b1 else (2.0 if quick else 0.1)
        # official restore (batch 1) + ours + the bf16 pass; the official CPU scripts and ours
        per_image = 2.5 * restore_s + 1.2 * sum(costs.values()) + 0.05
        constant = 15.0 if quick else 60.0        # warm-up, sqrtm, networks, rerun
        fit = int((check.time_left() - constant) / per_image)
        count = 3 if quick else min(check.args.images, fit)
        count -= count % batch if count >= 2 * batch else 0
        result |= {"images": count, "estimated_per_image_s": per_image,
                   "official_cpu_costs_per_image_s": costs}
        if count < (2 if quick else 16):
            check.skipped.append(f"protocol: only {max(fit, 0)} images would fit")
            return result
        _write_sources(faces, work / "src", count, size)
        _synthesize(work / "src", work / "data")
        data = work / "data"
        metrics, skipped = pipeline.usable_metrics(assets)
        if quick:   # 64x64 faces: NIQE needs 96x96 blocks (the metrics section checks it)
            metrics.remove("niqe")
            skipped["niqe"] = "quick: NIQE needs images of at least 96x96"
        result["metrics"] = metrics
        result["metrics_left_out"] = skipped
        pipeline.warm_up(data, methods, metrics, assets, device)
        common = dict(dataset=str(data), metrics=metrics, device=device, batch_size=batch,
                      assets=assets, quiet=True, metric_options=pipeline.metric_options(metrics),
                      allow_size="multiple-of-32", workers=workers)
        timings = result["timings"] = {}
        with timed(timings, "ours_first_pass", check.device):
            _, ours_values = pipeline.timed_run(methods=methods, out=work / "ours", **common)
        with timed(timings, "ours_rerun", check.device):
            pipeline.timed_run(methods=methods, out=work / "ours", **common)
        official_dir = work / "official" / "vqfr-v1"
        with timed(timings, "official_restore", check.device):
            pipeline.official_restore(data, official_dir, methods[0], assets, device)
        with timed(timings, "official_metric_scripts", check.device):
            script_s, official_values = pipeline.official_metrics(
                data, official_dir, metrics, assets, device, transcribed=True,
                frechet="eigh" if quick else "sqrtm")
        with timed(timings, "ours_metric_stage", check.device):
            pipeline.timed_run(methods=[f"folder:{official_dir}"], out=work / "folder",
                               **common)
        same, compared = pipeline.identical_images(work / "ours" / "data" / "vqfr-v1",
                                                   official_dir)
        result["official_script_s"] = script_s
        # equal only at batch size 1: another batch moves a few uint8 levels by one (runner doc)
        result["identical_pngs"] = {"identical": same, "compared": compared,
                                    "batch_sizes": {"ours": batch, "official_way": 1}}
        result["values"] = {name: {"ours": float(ours_values[0][name]),
                                   "official_way": float(official_values[name])}
                            for name in metrics}
        result |= _protocol_ratios(timings, script_s, count)
        # the fast configuration: bf16 restoration, NIQE's batched torch mode on the device
        if check.fits(count / 20 + 10, "protocol: fast first pass"):
            options = common["metric_options"] | (
                {"niqe": {"mode": "torch"}} if "niqe" in metrics else {})
            with timed(timings, "ours_first_pass_fast", check.device):
                _, fast_values = pipeline.timed_run(
                    methods=methods, out=work / "ours_fast",
                    **(common | {"dtype": "bf16", "metric_options": options}))
            result["fast"] = {"dtype": "bf16", "niqe_mode": "torch",
                              "values": {name: float(fast_values[0][name]) for name in metrics}}
            result |= _protocol_ratios(timings, script_s, count)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _protocol_ratios(timings: dict, script_s: dict, count: int) -> dict:
    """Ratios in this run, and both ways extrapolated to CelebA-Test's 3000 images: what scales
    with the images scaled, what a set costs once counted once (ours: the rerun, which builds
    the metric networks and computes the results but restores and measures nothing; the
    official way: scipy's sqrtm)."""
    seconds = {k: v["seconds"] for k, v in timings.items()}
    official = seconds["official_restore"] + seconds["official_metric_scripts"]
    frechet = script_s.get("fid_frechet", 0.0)
    fixed = seconds["ours_rerun"]
    scale = PROTOCOL_IMAGES / count
    out = {"ratios": {
        "first pass (restore + all metrics)": official / seconds["ours_first_pass"],
        "metric stage only": seconds["official_metric_scripts"] / seconds["ours_metric_stage"],
        "rerun (everything cached)": official / seconds["ours_rerun"]},
        "extrapolated_3000_s": {
            "ours": fixed + max(seconds["ours_first_pass"] - fixed, 0) * scale,
            "official_way": frechet + (official - frechet) * scale,
            "ours_metric_stage": fixed + max(seconds["ours_metric_stage"] - fixed, 0) * scale,
            "official_metric_scripts": frechet + (seconds["official_metric_scripts"]
                                                  - frechet) * scale}}
    if "ours_first_pass_fast" in seconds:
        out["extrapolated_3000_s"]["ours_fast"] = (
            fixed + max(seconds["ours_first_pass_fast"] - fixed, 0) * scale)
    return out


# ---- 8. extras --------------------------------------------------------------------------------
def extras(check: Check) -> dict:
    """VQFR v1 with channels-last, with cuDNN's benchmark mode (a run keeps it off: its
    algorithm choice may differ between calls, and reruns must give the same bits), and
    compiled (last: compiling takes minutes)."""
    from vqfr.studies.profile import Setting, profile_model

    size, batch = (64, 1) if check.quick else (512, 8)
    result: dict[str, Any] = {}
    if check.fits(15 if not check.quick else 2, "extras channels-last"):
        result["vqfr-v1"] = profile_model(
            "vqfr-v1", check.device, [Setting("bf16", batch, channels_last=True),
                                      Setting("fp32", batch, channels_last=True)],
            size, size, warmup=1, repeats=3, model=zoo_model(check, "vqfr-v1"),
            should_run=lambda s: check.fits(10 if not check.quick else 2, f"extras {s}"))
    if check.cuda and check.fits(20, "extras cudnn.benchmark"):
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            result["vqfr-v1 cudnn.benchmark"] = profile_model(
                "vqfr-v1", check.device, [Setting("bf16", batch), Setting("fp32", batch)],
                size, size, warmup=2, repeats=3, model=zoo_model(check, "vqfr-v1"))
        finally:
            torch.backends.cudnn.benchmark = previous
    # compiling VQFR takes minutes, and on 2 CPU cores more than a dry run may take
    if not check.quick and check.fits(150, "extras torch.compile"):
        result["vqfr-v1 compiled"] = profile_model(
            "vqfr-v1", check.device, [Setting("bf16", batch, compile=True)], size, size,
            warmup=1, repeats=3, model=zoo_model(check, "vqfr-v1"))
    for record in result.values():
        record.pop("params_by_module", None)
        record.get("flops", {}).pop("by_module", None)
        record.get("flops", {}).pop("by_op", None)
    return result


# ---- 9. targets -------------------------------------------------------------------------------
def targets(check: Check) -> dict:
    applicable = check.cuda and not check.quick
    gpu = check.result("environment").get("gpu") or str(check.device)
    note = (f"on {gpu}" if applicable else
            "not applicable: the targets are for one H100 at 512x512 (this is a dry run)")
    out: dict[str, Any] = {"applicable": applicable, "note": note}
    kernels_result = check.result("kernels")
    size = 512 if not check.quick else 64
    for label, dtype, kind in (("vqfr-v1 bf16 images/s", "bf16", "bf16"),
                               ("vqfr-v1 exact fp32 images/s", "fp32", "fp32 exact")):
        row = best_speed(check, "vqfr-v1", dtype, size=size)
        flops_per_image = (row or {}).get("achieved_flops_per_s", 0) / (
            row["images_per_s"] if row else 1)
        limit = best_flops(check, kind)
        bound = {"machine_limit_flops_per_s": limit,
                 "images_per_s_at_that_limit": (limit / flops_per_image
                                                if limit and flops_per_image else None),
                 "achieved_fraction_of_limit": (row["achieved_flops_per_s"] / limit
                                                if row and limit else None),
                 "top_kernels": [k["name"] for k in (kernels_result.get(dtype) or {})
                                 .get("top", [])[:5]]}
        out[label] = _target(label, row and row["images_per_s"], bound,
                             row and {k: row.get(k) for k in ("batch_size", "channels_last",
                                                              "compile", "precision",
                                                              "cudnn_benchmark")})
    proto = check.result("protocol")
    ratio = (proto.get("ratios") or {}).get("metric stage only")
    at_3000 = proto.get("extrapolated_3000_s") or {}
    out["metric stage vs the official scripts (x)"] = _target(
        "metric stage vs the official scripts (x)", ratio,
        {"official_script_s": proto.get("official_script_s"),
         "measured_images": proto.get("images"),
         "ratio_extrapolated_to_3000": (at_3000["official_metric_scripts"]
                                        / at_3000["ours_metric_stage"]
                                        if at_3000.get("ours_metric_stage") else None)}, None)
    extrapolated = (proto.get("extrapolated_3000_s") or {}).get("ours")
    timings = proto.get("timings") or {}
    out["CelebA-Test protocol, 3000 images (s)"] = _target(
        "CelebA-Test protocol, 3000 images (s)", extrapolated,
        {"measured_images": proto.get("images"),
         "gpu_busy_percent": (timings.get("ours_first_pass") or {}).get("gpu_busy_percent"),
         "metric_stage_share": ((timings.get("ours_metric_stage") or {}).get("seconds", 0)
                                / timings["ours_first_pass"]["seconds"]
                                if "ours_first_pass" in timings else None),
         "fast (bf16, NIQE torch mode)": (proto.get("extrapolated_3000_s") or {}).get(
             "ours_fast")},
        None)
    return out


def _target(label: str, value: float | None, bound: dict, setting: dict | None) -> dict:
    threshold, higher = TARGETS[label]
    passed = None if value is None else (value >= threshold if higher else value <= threshold)
    return {"value": value, "threshold": threshold, "higher_is_better": higher,
            "passed": passed, "setting": setting, "bound": bound}


# ---- summary ----------------------------------------------------------------------------------
def summary(check: Check) -> str:
    record, lines = check.record, []
    env = check.result("environment")
    lines.append(f"device check ({'quick, ' if check.quick else ''}{record['device']}): "
                 f"{env.get('gpu') or platform.machine()}, torch {env.get('torch')}, "
                 f"cuda {env.get('cuda')}, driver/smi {env.get('nvidia_smi')}; "
                 f"{record['elapsed_s']:.0f} s of {record['budget_s']:.0f} s budget")
    for name, entry in record["sections"].items():
        lines.append(f"  {name}: {entry['status']} in {entry['seconds']:.1f} s"
                     + (f", skipped {len(entry['skipped'])}" if entry["skipped"] else ""))
    for kind, row in check.result("limits").items():
        if isinstance(row, dict) and "matmul_flops_per_s" in row:
            lines.append(f"limit {kind}: matmul {row['matmul_flops_per_s'] / 1e12:.1f}, conv "
                         f"{row.get('conv_flops_per_s', 0) / 1e12:.1f} TFLOP/s")
    for label, row in check.result("models").items():
        if not isinstance(row, dict):
            continue
        for key, value in row["exact_vs_golden"].items():
            official = row["official_vs_exact"][key]
            detail = (f"PSNR {value['psnr_db']:.1f} dB, max|d| {value['max_abs']:.2e}"
                      if "psnr_db" in value else f"{value['differing']} differing")
            moved = (f"max|d| {official['max_abs']:.2e}" if "max_abs" in official
                     else f"{official['differing']} differing")
            lines.append(f"equal {label} {key}: {detail} {'ok' if value['ok'] else 'FAILED'}; "
                         f"official vs exact {moved}")
    metric = check.result("metrics")
    for name, row in (metric.get("checks") or {}).items():
        lines.append(f"metric {name}: max|d| {row['max_abs']:.2e} (tol {row['tolerance']:g}) "
                     f"{'ok' if row['ok'] else 'FAILED'}")
    if "lmd" in metric:
        lmd = metric["lmd"]
        heat = lmd.get("heatmaps_max_abs_vs_cpu_relative")
        lines.append(f"metric lmd ({lmd['images']} pairs, run policy official): landmarks "
                     f"{'equal' if lmd['landmarks_equal_golden'] else 'DIFFER from'} the golden, "
                     f"LMD max|d| {lmd['lmd_max_abs_vs_golden']:.1e}"
                     + (f", heatmaps vs cpu {heat:.1e} relative" if heat is not None else ""))
        if "speed" in lmd:
            row = lmd["speed"]
            lines.append(f"lmd speed ({row['pairs']} pairs, batch {row['batch_size']}): "
                         f"{row['ours_ms_per_image']:.1f} ms per image vs "
                         f"{row['official_ms_per_image']:.1f} ms (official loop), "
                         f"{row['speedup']:.2f}x")
    if "official_vs_exact" in metric:
        lines.append("metrics official vs exact: " + ", ".join(
            f"{k} {v:.2e}" for k, v in metric["official_vs_exact"].items()))
    timed_rows = [(key, row) for section in ("speed", "extras")
                  for key, model in check.result(section).items() if isinstance(model, dict)
                  for row in model["settings"]]
    for model, row in timed_rows:
        flags = " channels-last" * row["channels_last"] + " compiled" * row["compile"]
        label = (f"speed {model} {row['dtype']} {row['precision']} b{row['batch_size']} "
                 f"{row['size']}px{flags}")
        if "images_per_s" not in row:
            lines.append(f"{label}: {row.get('error') or 'skipped: ' + row['skipped']}")
            continue
        psnr = row.get("psnr_vs_fp32")
        lines.append(
            f"{label}: {row['images_per_s']:.2f} img/s, {row['latency_s']['median']:.4f} s, "
            f"{(row.get('peak_memory_bytes') or 0) / 2 ** 30:.2f} GiB, "
            f"{(row.get('achieved_flops_per_s') or 0) / 1e12:.1f} TFLOP/s"
            + (f", PSNR vs fp32 {psnr:.1f} dB" if psnr is not None else ""))
    for dtype, table in check.result("kernels").items():
        if isinstance(table, dict) and "top" in table:
            lines.append(f"kernels {dtype}: " + "; ".join(
                f"{k['name'][:48]} {k['share']:.0%}" for k in table["top"][:5]))
    proto = check.result("protocol")
    if "ratios" in proto:
        t = proto["timings"]
        lines.append(f"protocol {proto['images']} images: ours {t['ours_first_pass']['seconds']:.1f}"
                     f" s (GPU busy {t['ours_first_pass']['gpu_busy_percent']}), rerun "
                     f"{t['ours_rerun']['seconds']:.1f} s, official way "
                     f"{t['official_restore']['seconds'] + t['official_metric_scripts']['seconds']:.1f}"
                     f" s; PNGs identical {proto['identical_pngs']}")
        lines.append("protocol ratios: " + ", ".join(f"{k} {v:.2f}x"
                                                     for k, v in proto["ratios"].items()))
        lines.append("protocol at 3000 images (s): " + ", ".join(
            f"{k} {v:.0f}" for k, v in proto["extrapolated_3000_s"].items()))
    goals = check.result("targets")
    for label in TARGETS:
        row = goals.get(label)
        if row:
            verdict = {True: "PASS", False: "FAIL", None: "not measured"}[row["passed"]]
            value = f"{row['value']:.2f}" if row["value"] is not None else "-"
            lines.append(f"target {label} (threshold {row['threshold']:g}): {value} {verdict}"
                         + ("" if goals["applicable"] else " [dry run]"))
    lines.append("failures: " + ("; ".join(check.failures) if check.failures else "none"))
    return "\n".join(lines)


# ---- --prepare: the reference files for a machine without ../shared -----------------------
def prepare(source: Path, target: Path) -> int:
    """Copy what the check reads from ``source`` (a reference folder, with faces/ beside it)
    into ``target``/reference and ``target``/faces, goldens reduced to the compared entries."""
    (target / "reference").mkdir(parents=True, exist_ok=True)
    for name in REFERENCE_FILES:
        (target / "reference" / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source / name, target / "reference" / name)
    for name, entries in GOLDEN_ENTRIES.items():
        golden = torch.load(source / name, weights_only=False)
        reduced: dict[str, Any] = {}
        for entry in entries:
            parts = entry.split("/")
            value = golden
            for part in parts:
                value = value[part]
            holder = reduced
            for part in parts[:-1]:
                holder = holder.setdefault(part, {})
            holder[parts[-1]] = value
        (target / "reference" / name).parent.mkdir(parents=True, exist_ok=True)
        torch.save(reduced, target / "reference" / name)
    faces = target / "faces"
    faces.mkdir(exist_ok=True)
    for face in sorted((source.parent / "faces").glob("*.png")):
        shutil.copyfile(face, faces / face.name)
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"{target}: {total / 2 ** 20:.1f} MiB (reference files and faces for the device check)")
    return 0


SECTIONS = (("environment", environment, 1), ("limits", limits, 3), ("models", models, 8),
            ("metrics", metrics, 8), ("speed", speed, 14), ("kernels", kernels, 3),
            ("protocol", protocol, 30), ("extras", extras, 10), ("targets", targets, 0))


def main(argv: list[str] | None = None) -> int:
    from vqfr.cli.argtypes import positive_int

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    parser.add_argument("--reference", type=Path, default=REPO.parent / "shared" / "reference",
                        help="the reference folder, with faces/ beside it (default "
                             "../shared/reference; on a GPU machine .devref/reference)")
    parser.add_argument("--json", type=Path, default=Path("device_check.json"))
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, a few images: a dry run of every section (CPU, CI)")
    parser.add_argument("--budget", type=positive_int, default=None,
                        help="seconds for the whole check (default 420; --quick 1800: a dry "
                             "run covers every section, however slow the machine)")
    parser.add_argument("--images", type=positive_int, default=256,
                        help="most faces for the protocol section (fewer if the time left "
                             "asks; default 256)")
    parser.add_argument("--batch-size", type=positive_int, default=16,
                        help="batch of the protocol's one-pass run (default 16)")
    parser.add_argument("--sections", default=",".join(name for name, _, _ in SECTIONS),
                        help="comma-separated subset of the sections, in their order")
    parser.add_argument("--prepare", type=Path, metavar="DIR", default=None,
                        help="copy the reference files this check reads (from --reference) "
                             "into DIR/reference and DIR/faces, then exit")
    args = parser.parse_args(argv)
    if args.prepare:
        return prepare(args.reference, args.prepare)
    if args.budget is None:
        args.budget = 1800 if args.quick else 420
    wanted = [s for s in args.sections.split(",") if s]
    unknown = set(wanted) - {name for name, _, _ in SECTIONS}
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device here (use --device cpu for a "
                     "dry run)")
    if not (args.reference / "synth_weights.py").exists():
        parser.error(f"--reference {args.reference}: no reference files there (run "
                     "benchmarks/device_prep.sh beside ../shared and carry .devref)")
    make_deterministic(device)          # as a run: the timed kernels are the run's
    check = Check(args)
    check.run([s for s in SECTIONS if s[0] in wanted])
    print(summary(check), flush=True)
    print(f"record: {args.json}")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
