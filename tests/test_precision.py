"""The CUDA precision policy (vqfr.precision): the flags each policy sets, scoping and nesting,
what a CPU run means by it, and that runs apply it and key their caches and results by it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vqfr.precision import (PRECISIONS, active_precision, effective_precision, precision,
                            tf32_flags)
from vqfr.run.metricset import MetricSet

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def restore_flags():
    before = tf32_flags()
    yield
    torch.backends.cudnn.allow_tf32 = before["cudnn_conv_tf32"]
    torch.backends.cuda.matmul.allow_tf32 = before["cuda_matmul_tf32"]


def test_policies_set_pytorch_flags():
    # PyTorch's own defaults are the official policy: cuDNN TF32 on, matmul TF32 off
    assert PRECISIONS["official"] == (True, False)
    expected = {"exact": (False, False), "official": (True, False), "tf32": (True, True)}
    for policy, (conv, matmul) in expected.items():
        with precision(policy):
            assert torch.backends.cudnn.allow_tf32 is conv
            assert torch.backends.cuda.matmul.allow_tf32 is matmul
            assert active_precision() == policy


def test_scopes_nest_and_restore_even_on_error():
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, True
    with precision("official"):
        with precision("exact"):          # e.g. the LMD landmark network inside a run
            assert tf32_flags() == {"cudnn_conv_tf32": False, "cuda_matmul_tf32": False}
        assert active_precision() == "official"
        with pytest.raises(RuntimeError):
            with precision("exact"):
                raise RuntimeError("boom")
        assert active_precision() == "official"
    assert active_precision() == "tf32"


def test_unknown_policy_and_cpu_meaning():
    with pytest.raises(ValueError, match="exact, official, tf32"):
        with precision("fast"):
            pass
    assert effective_precision("official", "cpu") == "exact"
    assert effective_precision("tf32", torch.device("cuda:1")) == "tf32"
    assert effective_precision("exact", "cuda") == "exact"


def test_stored_metric_states_are_keyed_by_precision():
    exact = MetricSet(["psnr"], precision="exact")
    official = MetricSet(["psnr"], precision="official")
    assert exact.metric_id("psnr", 4) != official.metric_id("psnr", 4)
    assert exact.metric_id("psnr", 4) == MetricSet(["psnr"]).metric_id("psnr", 4)


def test_a_run_applies_its_policy_and_puts_the_flags_back(monkeypatch, tmp_path):
    from vqfr.run import benchmark

    seen = []
    monkeypatch.setattr(benchmark, "_run", lambda cfg, ctx: seen.append(tf32_flags()))
    with precision("official"):
        benchmark.run_benchmark(benchmark.RunConfig(dataset=str(tmp_path), precision="tf32"))
        assert active_precision() == "official"
    assert seen == [{"cudnn_conv_tf32": True, "cuda_matmul_tf32": True}]


def run_cli(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "vqfr", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_records_the_precision_a_cpu_run_had(faces_dir, tmp_path):
    from goldens import write_tiny_paired_set

    pairs = write_tiny_paired_set(faces_dir, tmp_path / "pairs", count=2, size=64)
    out = tmp_path / "metrics.json"
    proc = run_cli("metrics", "--restored", str(pairs / "lq"), "--gt", str(pairs / "hq"),
                   "--metrics", "psnr", "--precision", "official", "--json", str(out),
                   "--quiet", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    # on a CPU every policy is the same arithmetic: recorded as what it was
    assert json.loads(out.read_text())["provenance"]["precision"] == "exact"
    proc = run_cli("metrics", "--restored", str(pairs / "lq"), "--metrics", "niqe",
                   "--precision", "fast", "--json", str(out), cwd=tmp_path)
    assert proc.returncode == 2 and "--precision: invalid choice: 'fast'" in proc.stderr
    assert "Traceback" not in proc.stderr
