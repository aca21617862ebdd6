"""``vqfr-eval restore`` end to end: the written PNG of a synthetic VQFR v1 checkpoint equals the
official ``tensor2img`` of the reference golden; bad files are reported by name."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from vqfr.cli import main

GOLDEN = "vqfr_v1/golden_seed1_small.pt"


def official_tensor2img_rgb(y: torch.Tensor) -> np.ndarray:
    """basicsr ``tensor2img(min_max=(-1, 1))`` written out in numpy (without the BGR flip):
    float32 clamp, (y + 1) / 2, * 255, numpy round, uint8."""
    img = y.squeeze(0).float().clamp(-1, 1).numpy()
    img = (img + 1) / 2
    return (img.transpose(1, 2, 0) * 255.0).round().astype(np.uint8)


@pytest.fixture(scope="module")
def small_face(tmp_path_factory, faces_dir, reference_dir):
    """The golden's input: the face resized with INTER_AREA to 128x128, written as PNG."""
    golden = torch.load(reference_dir / GOLDEN, map_location="cpu", weights_only=False)
    folder = tmp_path_factory.mktemp("restore_in")
    bgr = cv2.imread(str(faces_dir / golden["face"]))
    path = folder / "vqfr_00000052_lq.png"
    cv2.imwrite(str(path), cv2.resize(bgr, (128, 128), interpolation=cv2.INTER_AREA))
    return path, golden


@pytest.fixture(scope="module")
def v1_checkpoint(tmp_path_factory):
    from vqfr.zoo import write_synthetic_checkpoint

    return write_synthetic_checkpoint("vqfr-v1", tmp_path_factory.mktemp("w") / "v1.pth", seed=1)


def test_restore_reproduces_golden(small_face, v1_checkpoint, tmp_path):
    path, golden = small_face
    # The file we feed is the golden's input (checks the input preparation, not the model).
    rgb = cv2.imread(str(path))[:, :, ::-1].copy()
    x = (torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255 - 0.5) / 0.5
    assert torch.equal(x, golden["input"].float())

    out = tmp_path / "out"
    code = main(["restore", "--method", "vqfr-v1", "--input", str(path), "--output", str(out),
                 "--asset", f"vqfr-v1={v1_checkpoint}", "--allow-size", "multiple-of-32",
                 "--quiet"])
    assert code == 0
    written = cv2.imread(str(out / "vqfr_00000052_lq.png"))[:, :, ::-1]
    expected = official_tensor2img_rgb(golden["outputs"]["main_dec"])
    diff = np.abs(written.astype(int) - expected.astype(int))
    # Our float output differs from the golden's by < 1e-5 (the arch tests' bound), so only a
    # value within 1e-5 * 127.5 of a rounding boundary (k + 0.5) can land one level away: a
    # handful of the 49,152 values at most. Observed: none.
    assert diff.max() <= 1
    assert (diff > 0).mean() <= 1e-3


def test_restore_reports_bad_files_and_goes_on(small_face, v1_checkpoint, tmp_path, capsys):
    path, _ = small_face
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "broken.png").write_bytes(b"not a png at all")
    big = cv2.imread(str(path))
    cv2.imwrite(str(folder / "odd_size.png"), cv2.resize(big, (100, 96)))
    cv2.imwrite(str(folder / "good.png"), cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA))
    out = tmp_path / "out"
    code = main(["restore", "--method", "vqfr-v1", "--input", str(folder), "--output", str(out),
                 "--asset", f"vqfr-v1={v1_checkpoint}", "--allow-size", "multiple-of-32",
                 "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "broken.png" in err and "odd_size.png" in err and "multiples of 32" in err
    assert sorted(p.name for p in out.iterdir()) == ["good.png"]


def test_restore_refuses_non_512_without_flag(small_face, v1_checkpoint, tmp_path, capsys):
    path, _ = small_face
    code = main(["restore", "--method", "vqfr-v1", "--input", str(path), "--output",
                 str(tmp_path / "out"), "--asset", f"vqfr-v1={v1_checkpoint}", "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert "512x512" in err and "--allow-size multiple-of-32" in err and path.name in err
    assert not (tmp_path / "out" / f"{path.stem}.png").exists()


def test_restore_absent_weights_is_a_clean_error(small_face, tmp_path, capsys):
    path, _ = small_face
    code = main(["restore", "--method", "vqfr-v2", "--input", str(path), "--output",
                 str(tmp_path / "out"), "--asset", f"vqfr-v2={tmp_path / 'missing.pth'}"])
    err = capsys.readouterr().err
    assert code == 2
    assert "vqfr-v2" in err and "missing.pth" in err and "Traceback" not in err


def test_restore_rejects_option_of_another_model(small_face, tmp_path, capsys):
    path, _ = small_face
    code = main(["restore", "--method", "vqfr-v1", "--input", str(path), "--output",
                 str(tmp_path / "out"), "--fidelity-weight", "0.7"])
    assert code == 2
    assert "fidelity_weight" in capsys.readouterr().err
