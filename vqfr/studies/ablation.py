"""``vqfr-eval ablate``: the VQFR paper's ablations (texture warping module, parallel decoder) and
the fidelity sweeps, as method variants run by the benchmark (one cached, resumable pass each;
a sweep's variants are restored from one forward per batch, see ``benchmark.sweep_groups``),
plus the TWM offsets of a few images per VQFR variant for the report
(``RUN_DIR/<dataset>/<slug>/offsets/<stem>.npz``, see reports/README.md)."""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from vqfr.data.datasets import open_dataset
from vqfr.data.images import read_image, sha256_file
from vqfr.errors import VqfrError
from vqfr.precision import effective_precision, precision
from vqfr.run.benchmark import RunConfig, RunReport, run_benchmark
from vqfr.run.methods import Method, options_digest, parse_method, parse_methods
from vqfr.run.restorer import DTYPES, to_model_input

STUDIES = ("twm", "parallel-decoder", "fidelity")
# The eval/ spec each study is reported beside (the specs' rows are VQFR v1 variants).
STUDY_SPECS = {"twm": "vqfr_ablation_twm", "parallel-decoder": "vqfr_ablation_parallel_decoder"}
VQFR_MODELS = ("vqfr-v1", "vqfr-v2")
# The official configs put a TWM at every decoder level (x32 ... x1 downsampling).
TWM_LEVELS = (32, 16, 8, 4, 2, 1)
FIDELITY_RATIOS = (0.0, 0.25, 0.5, 0.75, 1.0)     # VQFR v2
FIDELITY_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)    # CodeFormer
# VQFR v2 at fidelity_ratio 0 is its texture branch: the main branch, where the TWMs are, is not
# run. Its TWM and branch ablations therefore use r = 1 (the full main-branch output) by default.
V2_ABLATION_RATIO = 1.0
OFFSETS_IMAGES = 3                                # the report shows 3 per run
OFFSETS_KEY = "key.json"                          # beside the .npz files (the report reads *.npz)


def spell(name: str, options: dict | None = None) -> str:
    """The method spelling of ``name`` with ``options``, leaving out those at the model's
    default, so a variant equal to the plain model shares its directory and restore cache."""
    defaults = parse_method(name).options
    parts = [name]
    for key, value in (options or {}).items():
        if key not in defaults:
            raise VqfrError(f"{name} has no option {key!r}")
        if isinstance(value, (list, tuple)):
            if tuple(value) == tuple(defaults[key]):
                continue
            # "+" alone is the empty tuple in the spelling
            parts.append(f"{key}={'+'.join(str(v) for v in value) or '+'}")
        elif value != defaults[key]:
            parts.append(f"{key}={value}")
    return ":".join(parts)


def study_methods(study: str, model: str | None = None,
                  fidelity_ratio: float | None = None) -> list[str]:
    """Method spellings of a study. twm: all TWMs on, at 32 and 16 off (a row of the spec), all
    off, each level off in turn; parallel-decoder: main vs. texture branch; fidelity: VQFR v2's
    ``fidelity_ratio`` and CodeFormer's ``fidelity_weight`` sweeps (``model`` picks one of
    them). VQFR v2 variants of the first two run at ``fidelity_ratio`` (default 1)."""
    if study not in STUDIES:
        raise VqfrError(f"unknown study {study!r}; one of {', '.join(STUDIES)}")
    if fidelity_ratio is not None and (study == "fidelity" or model != "vqfr-v2"):
        raise VqfrError("--fidelity-ratio sets the ratio of the VQFR v2 twm and "
                        "parallel-decoder studies (--model vqfr-v2) only")
    if study == "fidelity":
        sweeps = {"vqfr-v2": ("fidelity_ratio", FIDELITY_RATIOS),
                  "codeformer": ("fidelity_weight", FIDELITY_WEIGHTS)}
        if model is not None and model not in sweeps:
            raise VqfrError(f"the fidelity study sweeps {' or '.join(sweeps)}; {model} has no "
                            "fidelity knob")
        return [spell(name, {option: value})
                for name, (option, values) in sweeps.items() if model in (None, name)
                for value in values]
    model = model or "vqfr-v1"
    if model not in VQFR_MODELS:
        raise VqfrError(f"the {study} study ablates {' or '.join(VQFR_MODELS)}, not {model}")
    base: dict = {}
    if model == "vqfr-v2":
        ratio = V2_ABLATION_RATIO if fidelity_ratio is None else float(fidelity_ratio)
        if ratio <= 0:
            raise VqfrError("VQFR v2 skips its main branch (where the TWMs are) at "
                            "fidelity_ratio 0: give --fidelity-ratio above 0")
        base = {"fidelity_ratio": ratio}
    if study == "parallel-decoder":
        texture = {"branch": "texture"}   # v2: the texture branch is r = 0 whatever the ratio
        return [spell(model, base), spell(model, texture)]
    disabled = [(), (32, 16), TWM_LEVELS, *((level,) for level in TWM_LEVELS)]
    return [spell(model, {**base, "twm_disabled": levels}) for levels in disabled]


def uses_twm(method: Method) -> bool:
    """Whether the method's output goes through the TWMs (VQFR main branch, v2 with r > 0)."""
    if method.name not in VQFR_MODELS or method.options.get("branch", "main") != "main":
        return False
    return method.name == "vqfr-v1" or method.options.get("fidelity_ratio", 0.0) > 0


@dataclass
class AblationConfig:
    study: str
    run: RunConfig                         # dataset, out, device, ...; its methods are replaced
    model: str | None = None
    fidelity_ratio: float | None = None    # VQFR v2 twm / parallel-decoder
    offsets_images: int = OFFSETS_IMAGES
    report_dir: Path | None = None


@dataclass
class AblationResult:
    run: RunReport
    methods: list[Method]
    offsets: dict[str, list[Path]] = field(default_factory=dict)   # slug -> files
    report: Path | None = None


def run_ablation(cfg: AblationConfig) -> AblationResult:
    spellings = study_methods(cfg.study, cfg.model, cfg.fidelity_ratio)
    # the variants' options are all in their spellings: no global defaults (--fidelity-weight)
    run_cfg = replace(cfg.run, methods=spellings, method_defaults={})
    report = run_benchmark(run_cfg)
    methods = parse_methods(spellings, {"seed": run_cfg.seed})
    result = AblationResult(report, methods)
    if not report.is_main:
        return result
    done = [m for m in methods if m.slug not in report.skipped and m.slug not in report.failed]
    if len(done) != len(report.summaries):
        raise RuntimeError("run_benchmark returned summaries that do not match its methods")
    summaries = dict(zip((m.slug for m in done), report.summaries))
    with_offsets = [m for m in done if uses_twm(m)]
    if with_offsets and cfg.offsets_images > 0:
        result.offsets = write_offsets(run_cfg, with_offsets, summaries, cfg.offsets_images)
    if cfg.report_dir is not None and report.summaries:
        from vqfr.report.render import build_report

        specs = ([STUDY_SPECS[cfg.study]] if cfg.study in STUDY_SPECS
                 and (cfg.model or "vqfr-v1") == "vqfr-v1" else [])
        result.report = build_report([run_cfg.out], cfg.report_dir, specs,
                                     title=f"vqfr-eval ablation: {cfg.study}")
    return result


def write_offsets(cfg: RunConfig, methods: list[Method], summaries: dict[str, dict],
                  count: int) -> dict[str, list[Path]]:
    """``offsets/<stem>.npz`` of the first ``count`` images for each method: one float16 array
    ``Level_<rate>`` of shape [72, h, w] per TWM level (torchvision's DCN offset layout), from
    one extra forward per image and distinct main branch (variants that differ only in
    ``fidelity_ratio`` share their offsets). Kept on rerun while ``offsets/key.json`` matches."""
    dataset = open_dataset(cfg.dataset, root=cfg.data_root)
    items = dataset.items[:count]
    inputs = {it.stem: sha256_file(it.lq_path) for it in items}
    device = torch.device(cfg.device)
    models: dict[str, torch.nn.Module] = {}
    # the last main branch's offsets only (a 512x512 image's are ~50 MB); the variants sharing
    # one (a fidelity sweep) are listed one after another
    last: tuple[str, dict[str, dict[str, np.ndarray]]] = ("", {})
    written: dict[str, list[Path]] = {}
    for method in methods:
        folder = Path(cfg.out) / dataset.name / method.slug / "offsets"
        key = {"method": method.key(), "dtype": cfg.dtype, "inputs": inputs,
               "precision": effective_precision(cfg.precision, device),
               "weights_sha256": summaries[method.slug]["method"]["weights"]["sha256"]}
        key = json.loads(json.dumps(key, sort_keys=True, default=str))   # as saved: lists
        files = [folder / f"{stem}.npz" for stem in inputs]
        if _saved_key(folder) == key and all(f.is_file() for f in files):
            written[method.slug] = files
            continue
        options = {k: v for k, v in method.options.items() if k != "fidelity_ratio"}
        branch_id = options_digest({"name": method.name, "options": options})
        if branch_id != last[0]:
            if method.name not in models:
                from vqfr.zoo import create_model

                models[method.name] = create_model(method.name, cfg.assets, device=device)
            with precision(cfg.precision):
                last = (branch_id, _offsets(models[method.name], method, items, device,
                                            cfg.dtype, cfg.batch_size))
        folder.mkdir(parents=True, exist_ok=True)
        for stale in set(folder.glob("*.npz")) - set(files):
            stale.unlink()
        for stem, path in zip(inputs, files):
            tmp = path.with_suffix(".tmp.npz")
            np.savez_compressed(tmp, **last[1][stem])
            tmp.replace(path)
        (folder / OFFSETS_KEY).write_text(json.dumps(key, sort_keys=True), encoding="utf-8")
        written[method.slug] = files
    return written


def _saved_key(folder: Path) -> dict | None:
    try:
        return json.loads((folder / OFFSETS_KEY).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _offsets(model: torch.nn.Module, method: Method, items, device: torch.device, dtype: str,
             batch_size: int) -> dict[str, dict[str, np.ndarray]]:
    """stem -> {"Level_<rate>": [72, h, w] float16}, batching images of the same size."""
    images = {it.stem: read_image(it.lq_path) for it in items}
    by_shape: dict[tuple, list[str]] = {}
    for stem, rgb in images.items():
        by_shape.setdefault(rgb.shape, []).append(stem)
    autocast = (torch.autocast(device.type, dtype=DTYPES[dtype]) if dtype != "fp32"
                else nullcontext())
    out: dict[str, dict[str, np.ndarray]] = {}
    for stems in by_shape.values():
        for start in range(0, len(stems), batch_size):
            chunk = stems[start:start + batch_size]
            u8 = torch.from_numpy(np.stack([images[s] for s in chunk]).transpose(0, 3, 1, 2).copy())
            with torch.inference_mode(), autocast:
                _, offsets = model.restore(to_model_input(u8.to(device)), **method.options,
                                           return_offsets=True)
            for i, stem in enumerate(chunk):
                out[stem] = {f"Level_{level}": offsets[level][i].float().cpu().numpy()
                             .astype(np.float16) for level in sorted(offsets, reverse=True)}
    return out
