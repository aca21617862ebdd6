"""`vqfr-eval profile`: parameter counts and FLOPs against the reference manifests (which were
measured on the official code), the analytic deformable-convolution count against an independent
formula, and a quick CPU run end to end (JSON -> report efficiency table)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils.flop_counter import FlopCounterMode
from torchvision.ops import deform_conv2d

from vqfr.cli import main
from vqfr.report.render import build_report
from vqfr.studies.profile import DEFORM_CONV2D, count_params, deform_conv2d_flops, model_flops
from vqfr.zoo.registry import MODELS
from vqfr.zoo.specs import build_arch

MANIFESTS = {"vqfr-v1": "vqfr_v1", "vqfr-v2": "vqfr_v2", "gfpgan-v1.3": "gfpgan_v1.4",
             "gfpgan-v1.4": "gfpgan_v1.4", "codeformer": "codeformer"}


def manifest(reference_dir, model):
    return json.loads((reference_dir / MANIFESTS[model] / "manifest.json").read_text())


@pytest.mark.parametrize("model", sorted(MANIFESTS))
def test_params_match_manifest(reference_dir, model):
    with FakeTensorMode():      # shapes only: every model in well under a second
        counts = count_params(build_arch(MODELS[model]))
    ref = manifest(reference_dir, model)
    assert counts["params"] == ref["num_params"]
    assert counts["params_by_module"] == ref["num_params_by_module"]
    if model == "vqfr-v1":      # the codebook is frozen (fix_keys): the paper's 76.3M
        assert counts["trainable_params"] == 76_301_439


def test_vqfr_flops_match_manifest(reference_dir):
    v2 = model_flops("vqfr-v2", 512, {"fidelity_ratio": 0.5})   # r > 0 runs the main branch
    measured = manifest(reference_dir, "vqfr-v2")["measured"]
    assert v2["flopcounter"] == measured["flops_flopcountermode"]
    assert v2["deform_conv2d"] == measured["flops_deform_conv2d_analytic"]
    # (the official code runs the final decoder.conv_out outside decoder.forward, so the manifest
    # attributes those 0.9 GFLOPs to no child; everything else is attributed alike)
    for name in ("encoder", "feat2index", "main_branch", "inpfeat_extraction"):
        assert v2["by_module"][name] == measured["flops_total_by_module"][name]

    v1 = model_flops("vqfr-v1", 512, MODELS["vqfr-v1"].options)
    ref = manifest(reference_dir, "vqfr-v1")
    # The manifest ran the official forward, which also decodes the texture branch's output
    # image; restore(branch='main') skips that one 3x3 conv (decoder.conv_out.2: 128 -> 3).
    shape = next(t["shape"] for t in ref["tensors"] if t["key"] == "decoder.conv_out.2.weight")
    texture_out = 2 * 512 * 512 * math.prod(shape)
    assert v1["flopcounter"] == ref["measured"]["flops_flopcountermode"] - texture_out
    assert v1["deform_conv2d"] == ref["measured"]["flops_deform_conv2d_analytic"]


def test_dcn_count_independent_formula(reference_dir):
    """v1 has one 3x3 DCN per TWM level (C -> C, stride 1) at H/rate x W/rate; C per level from
    the official config: base_channels x channel_multipliers over levels 1, 2, 4, ..., 32."""
    config = manifest(reference_dir, "vqfr-v1")["config"]
    rates = [1, 2, 4, 8, 16, 32]
    channels = [config["base_channels"] * m for m in config["channel_multipliers"]]
    expected = sum(2 * c * c * 9 * (512 // r) ** 2 for c, r in zip(channels, rates))
    assert model_flops("vqfr-v1", 512, {"branch": "main"})["deform_conv2d"] == expected


def test_dcn_formula_groups_and_stride():
    n, cin, cout, groups, size, k = 2, 6, 4, 2, 9, 3
    x = torch.randn(n, cin, size, size)
    weight = torch.randn(cout, cin // groups, k, k)
    hout = (size + 2 * 1 - k) // 2 + 1
    offset = torch.zeros(n, 2 * k * k, hout, hout)
    counter = FlopCounterMode(display=False, custom_mapping={DEFORM_CONV2D: deform_conv2d_flops})
    with counter:
        deform_conv2d(x, offset, weight, stride=2, padding=1)
    assert counter.get_total_flops() == 2 * n * cout * (cin // groups) * k * k * hout * hout


@pytest.mark.slow
def test_profile_quick_cpu_and_report(reference_dir, tmp_path, capsys):
    out = tmp_path / "profile.json"
    assert main(["profile", "--method", "vqfr-v1", "--quick", "--size", "32", "--channels-last",
                 "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "76,301,439 trainable" in printed and "NVIDIA A100" in printed
    record = json.loads(out.read_text())
    model = record["models"][0]
    assert model["params"] == manifest(reference_dir, "vqfr-v1")["num_params"]
    assert model["flops"]["size"] == 512 and model["flops"]["counted_on"] == "fake tensors"
    plain, fast = model["settings"]
    assert plain["channels_last"] is False and plain["psnr_vs_fp32"] is None
    assert fast["channels_last"] is True and fast["size"] == 32
    assert fast["psnr_vs_fp32"] >= 40         # same maths, another memory layout
    for setting in model["settings"]:
        lat = setting["latency_s"]
        assert len(lat["runs"]) == 2 and lat["min"] <= lat["median"] <= lat["max"]
        assert setting["images_per_s"] == pytest.approx(1 / lat["median"])
    assert "synthetic" in record["weights"]

    # the efficiency table of the report shows it beside the paper's figures, devices named
    from report_runs import make_runs

    runs, _ = make_runs(reference_dir.parent / "faces", tmp_path)
    index = build_report([runs], tmp_path / "report", [], out)
    text = index.read_text(encoding="utf-8")
    assert "NVIDIA A100" in text and "76.3" in text and record["device_name"] in text
    assert f"{model['trainable_params'] / 1e6:.3f}" in text


def test_precision_settings_and_budget_on_cpu():
    """Off CUDA every precision policy is the same arithmetic: timed once, labelled exact. A
    setting the budget declines is recorded as skipped; a timed one records its achieved FLOP/s
    when the FLOPs were counted at the timing size."""
    from vqfr.studies.profile import Setting, profile, profile_model

    record = profile(["vqfr-v1"], precisions=("exact", "tf32", "official"), size=32,
                     flops_size=None, warmup=0, repeats=1)
    rows = record["models"][0]["settings"]
    assert [(r["dtype"], r["precision"]) for r in rows] == [("fp32", "exact")]
    record = profile_model("vqfr-v1", torch.device("cpu"),
                           [Setting(batch_size=1), Setting("bf16", 1, precision="tf32")],
                           size=32, flops_size=32, warmup=0, repeats=1,
                           should_run=lambda setting: setting.dtype == "fp32")
    timed, skipped = record["settings"]
    assert timed["achieved_flops_per_s"] == pytest.approx(
        record["flops"]["total"] * timed["images_per_s"])
    assert skipped["skipped"] == "time" and "images_per_s" not in skipped


def test_out_of_memory_is_recorded_and_the_others_run(monkeypatch, capsys):
    """A setting the GPU has no memory for is recorded with its error (here simulated: exact fp32
    at batch 2); a bf16 row whose exact-fp32 reference does not fit keeps its timing."""
    from vqfr.studies import profile as profile_module
    from vqfr.studies.profile import Setting, profile_model

    real = profile_module.time_setting

    def time_setting(model, options, lq, setting, warmup, repeats):
        if setting.dtype == "fp32" and setting.batch_size == 2:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 38 GiB")
        return real(model, options, lq, setting, warmup, repeats)

    monkeypatch.setattr(profile_module, "time_setting", time_setting)
    record = profile_model("vqfr-v1", torch.device("cpu"),
                           [Setting("bf16", 2), Setting("fp32", 2), Setting("fp32", 1)],
                           size=32, flops_size=None, warmup=0, repeats=1)
    bf16, fp32_b2, fp32_b1 = record["settings"]
    assert bf16["images_per_s"] > 0 and bf16["psnr_vs_fp32"] is None
    assert fp32_b2["error"].startswith("out of memory: CUDA out of memory")
    assert "images_per_s" not in fp32_b2 and fp32_b1["images_per_s"] > 0
    # the printed table shows the error row and goes on (was: KeyError 'latency_s', and the
    # --json record never written)
    from vqfr.cli.profile import _print

    _print({"device_name": "CPU", "device": "cpu", "torch": torch.__version__, "threads": 1,
            "weights": "synthetic", "models": [record]})
    printed = capsys.readouterr().out
    assert "fp32 b2 32px: out of memory: CUDA out of memory" in printed
    assert printed.count(" s [") == 2                   # the two timed rows
