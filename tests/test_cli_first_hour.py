"""What a new user meets, through the command line in subprocesses (exit code, messages, files
left behind): everything missing said once and at once, non-official weights flagged, where the
results are, two runs told apart in a report, the offline demo, and the small things (plain
warnings, no escape codes in logs, aligned columns, --help, metrics without --json, a closed
pipe)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest

from cli import REPO, vqfr_eval
from goldens import write_tiny_paired_set

ALL_FILES = ("VQFR_v1-33a1fac5.pth", "VQFR_v2.pth", "GFPGANv1.4.pth", "codeformer.pth",
             "vgg16-397923af.pth", "pt_inception-2015-12-05-6726825d.pth",
             "inception_FFHQ_512.pth", "niqe_pris_params.npz", "resnet18_110.pth",
             "alignment_WFLW_4HG.pth")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, faces_dir):
    """3 faces at 32x32 (the smallest VQFR v1 input), LQ and HQ."""
    return write_tiny_paired_set(faces_dir, tmp_path_factory.mktemp("data") / "tiny", 3, 32)


@pytest.fixture(scope="module")
def synthetic_v1(tmp_path_factory):
    from vqfr.zoo import write_synthetic_checkpoint

    return write_synthetic_checkpoint("vqfr-v1", tmp_path_factory.mktemp("w") / "v1.pth", seed=1)


def test_fresh_machine_main_job_lists_everything_missing(tmp_path):
    """`vqfr-eval --dataset celeba-test` with nothing on disk: one message with the dataset (its
    archive folders and the import command) and every file of the default methods and metrics,
    each once; exit 2; nothing written."""
    done = vqfr_eval("--dataset", "celeba-test", "--root", tmp_path / "data", cwd=tmp_path,
                     home=tmp_path / "home")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    err = done.stderr
    assert err.count("vqfr-eval: error:") == 1
    assert "celeba_512_validation_lq (LQ) and celeba_512_validation (HQ)" in err
    assert ("vqfr-eval datasets import celeba-test DOWNLOADS/celeba_512_validation_lq.zip "
            "DOWNLOADS/celeba_512_validation.zip") in err
    for name in ALL_FILES:
        assert err.count(f"file:      {name}") == 1, name
    assert "10 weight/parameter file(s) missing" in err
    assert "vqfr-eval models fetch codeformer" in err        # downloadable: how to get it now
    assert not (tmp_path / "runs").exists()


def test_each_missing_file_said_once(tiny, tmp_path):
    """Methods and metrics sharing a missing file (a CodeFormer sweep; Deg. and IDS) get its
    guidance once; the rest of the run goes on and says where its results are; a log file gets
    no carriage returns or escape codes."""
    done = vqfr_eval("--dataset", tiny, "--method", "codeformer,codeformer:fidelity_weight=0.7,"
                     "vqfr-v2,lq", "--metrics", "psnr,deg,ids", "--out", tmp_path / "runs",
                     home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    err = done.stderr
    for name in ("codeformer.pth", "VQFR_v2.pth", "resnet18_110.pth"):
        assert err.count(f"file:      {name}") == 1, name
    assert "needed by codeformer, codeformer (fidelity_weight=0.7)" in err
    assert "needed by metric deg, metric ids" in err
    assert "\r" not in err and "\x1b" not in err
    folder = tmp_path / "runs" / "tiny"
    assert f"results in {folder}/:" in done.stdout
    assert "lq/: summary.json, per_image.csv, images/ (3 PNGs)" in done.stdout
    assert f"log: {tmp_path / 'runs' / 'log.txt'}" in done.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["lq"]


def test_non_official_weights_are_flagged(tiny, synthetic_v1, tmp_path):
    """A checkpoint that is not the published file: one plain warning line per run (no Python
    source line), `official: false` in summary.json, a warning in the report; and each pass
    reports its own time (Input's is not the whole run's)."""
    asset = f"vqfr-v1={synthetic_v1}"
    done = vqfr_eval("--dataset", tiny, "--method", "vqfr-v1,lq", "--metrics", "psnr",
                     "--allow-size", "multiple-of-32", "--asset", asset, "--batch-size", "1",
                     "--out", tmp_path / "runs", home=tmp_path / "home")
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "not the official" in line]
    assert len(lines) == 1 and lines[0].startswith("vqfr-eval: warning: ")
    assert "Warning" not in done.stderr and "warnings.warn" not in done.stderr
    summary = json.loads((tmp_path / "runs" / "tiny" / "vqfr-v1" / "summary.json").read_text())
    assert summary["method"]["weights"]["official"] is False
    assert summary["method"]["weights"]["path"] == str(synthetic_v1)
    seconds = {m: float(s) for m, s in re.findall(r"^(vqfr-v1|Input): .* ([\d.]+) s$",
                                                     done.stderr, re.M)}
    assert seconds["Input"] < seconds["vqfr-v1"] / 4, seconds   # was about half of it

    report = vqfr_eval("report", tmp_path / "runs", "-o", tmp_path / "report",
                       home=tmp_path / "home")
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report" / "index.html").read_text()
    assert "not the official file" in html and str(synthetic_v1) in html

    restore = vqfr_eval("restore", "--method", "vqfr-v1", "--input", tiny / "lq", "--output",
                        tmp_path / "restored", "--allow-size", "multiple-of-32", "--asset",
                        asset, home=tmp_path / "home")
    assert restore.returncode == 0, restore.stderr
    assert restore.stderr.count("vqfr-eval: warning: ") == 1
    assert "not the official VQFR_v1-33a1fac5.pth" in restore.stderr


def test_report_of_two_runs(tiny, tmp_path):
    """Two run dirs: rows labelled by run dir; grids chosen by each run's first method (not the
    alphabetically first); a spec named in either spelling."""
    for folder in ("zeta", "alpha"):
        shutil.copytree(tiny / "lq", tmp_path / folder)
    first = vqfr_eval("--dataset", tiny, "--method",
                      f"folder:{tmp_path / 'zeta'},folder:{tmp_path / 'alpha'},lq",
                      "--metrics", "psnr", "--out", tmp_path / "A", home=tmp_path / "home")
    second = vqfr_eval("--dataset", tiny, "--method", "lq", "--metrics", "psnr", "--out",
                       tmp_path / "B", home=tmp_path / "home")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    report = vqfr_eval("report", tmp_path / "A", tmp_path / "B", "--spec", "vqfr-celeba-test",
                       "-o", tmp_path / "report", home=tmp_path / "home")
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "report" / "index.html").read_text()
    assert f"Input [{tmp_path / 'A'}]" in html and f"Input [{tmp_path / 'B'}]" in html
    assert f"values of <b>zeta [{tmp_path / 'A'}]</b>" in html

    wrong = vqfr_eval("report", tmp_path / "A", "--spec", "vqfr-celeba", "-o",
                      tmp_path / "other", home=tmp_path / "home")
    assert wrong.returncode == 2 and "Traceback" not in wrong.stderr
    assert "vqfr-celeba-test" in wrong.stderr and "vqfr_celeba_test" not in wrong.stderr
    assert not (tmp_path / "other").exists()


def readme_block(after: str) -> list[str]:
    """The commands of the first bash block after the heading or line ``after`` in README.md."""
    text = (REPO / "README.md").read_text()
    block = text[text.index(after):].split("```bash\n", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_offline_demo(tmp_path):
    """The README's offline demo, command for command: nothing to download, nothing missing;
    verify calls the procedural set complete, never paper-comparable."""
    home, env = tmp_path / "home", {"VQFR_EVAL_DATA": str(tmp_path / "data")}
    commands = readme_block("To try everything offline")
    assert commands == ["vqfr-eval datasets demo", "vqfr-eval --dataset demo --method lq"]
    made = vqfr_eval(*commands[0].split()[1:], cwd=tmp_path, env=env, home=home)
    assert made.returncode == 0 and commands[1] in made.stdout, made.stderr
    done = vqfr_eval(*commands[1].split()[1:], cwd=tmp_path, env=env, home=home)
    assert done.returncode == 0, done.stderr
    assert "psnr" in done.stdout and "ssim" in done.stdout
    assert "missing" not in done.stderr and "downloading" not in done.stderr
    assert (tmp_path / "runs" / "demo" / "lq" / "summary.json").is_file()
    verified = vqfr_eval("datasets", "verify", "demo", cwd=tmp_path, env=env, home=home)
    assert verified.returncode == 0, verified.stdout
    assert "paper-comparable" not in verified.stdout
    assert "procedural smoke-test set" in verified.stdout


def test_readme_setup_is_what_ci_runs():
    """Two commands on a fresh machine: install (without the heavy pyiqa extra) and run the main
    job; the test command, which .ci/run runs as its last line. The core install needs one
    OpenCV."""
    import tomllib

    install, tests = readme_block("## Set-up")
    assert install == "python3 -m pip install -e '.[test]' && vqfr-eval --dataset celeba-test"
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == tests == "python3 -m pytest"
    assert "python3 -m pip install -e '.[iqa]'" in (REPO / "README.md").read_text()
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    opencv = [d for d in project["dependencies"] if d.startswith("opencv")]
    assert opencv == ["opencv-python-headless>=4.8"]
    assert project["optional-dependencies"]["iqa"] == ["pyiqa>=0.1.13"]


def test_small_things(tiny, tmp_path):
    home = tmp_path / "home"
    from vqfr.data.datasets import load_manifest, registered_names

    helped = vqfr_eval("--help", home=home)
    for name in registered_names():
        if name != "demo":
            assert load_manifest(name).title in " ".join(helped.stdout.split()), name

    listed = vqfr_eval("models", home=home)
    rows = listed.stdout.split("\n\n")[0].splitlines()[1:]
    assert len({row.index("vqfr.archs") for row in rows[1:]} | {rows[0].index("ARCH")}) == 1

    measured = vqfr_eval("metrics", "--restored", tiny / "lq", "--gt", tiny / "hq",
                         "--metrics", "psnr", cwd=tmp_path, home=home)
    assert measured.returncode == 0, measured.stderr
    assert re.search(r"^psnr: \d", measured.stdout, re.M)
    assert {p.name for p in tmp_path.iterdir()} <= {"home"}   # no JSON written


@pytest.mark.parametrize("args, message", [
    (["metrics", "--restored", "{tmp}/absent", "--metrics", "psnr"], "absent: no such folder"),
    (["datasets", "synth", "--hq", "{tmp}/absent", "--out", "{tmp}/out"],
     "absent: no such folder"),
    (["restore", "--method", "vqfr-v1:branch=nope", "--input", "{tiny}/lq", "--output",
      "{tmp}/out", "--allow-size", "multiple-of-32", "--asset", "vqfr-v1={v1}"],
     "vqfr-v1 (branch=nope): branch must be 'main' or 'texture', got 'nope'"),
])
def test_bad_arguments_are_messages(args, message, tiny, synthetic_v1, tmp_path):
    done = vqfr_eval(*[a.format(tmp=tmp_path, tiny=tiny, v1=synthetic_v1) for a in args],
                     home=tmp_path / "home")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert message in done.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_closed_pipe_is_no_traceback(tmp_path):
    """`vqfr-eval models | head -1`: the reader is gone before anything is printed."""
    env = {"VQFR_EVAL_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "vqfr", "models"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, cwd=REPO)
    process.stdout.close()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 141 and b"Traceback" not in err, err
