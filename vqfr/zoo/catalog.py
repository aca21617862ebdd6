"""Every asset (downloadable file) and restoration model the suite knows.

Sources of the URLs and hashes:
- VQFR: README of TencentARC/VQFR @ 239c77a7 (v1 and the metric weights on Google Drive only),
  the v2.0.0 GitHub release (``VQFR_v2.pth``). ``VQFR_v1-33a1fac5.pth`` carries the first 8 hex
  digits of its sha256 (``scripts/publish_models.py`` names files that way).
- GFPGAN / CodeFormer: the GitHub releases that GFPGANer / inference_codeformer.py download; the
  full sha256 values are the ones many independent download lists pin (recorded in the reference
  manifests); they are not published by the authors.
- Metric files: pytorch-fid and torchvision release URLs (torch.hub names: ``-<sha256 prefix>``);
  the NIQE parameters' full sha256 is that of the official file in the VQFR snapshot. The AWing
  FAN (LMD) file has no published hash anywhere (facexlib downloads it unchecked); LMD records
  the sha256 of the file it used in its options.
When no hash is known, the sha256 of the file actually used is recorded with the results.
"""
from __future__ import annotations

from vqfr.zoo.registry import Asset, ModelSpec, register_asset, register_model

VQFR_DRIVE = "https://drive.google.com/drive/folders/1lczKYEbARwe27FJlKoFdng7UnffGDjO2"
METRIC_DRIVE = "https://drive.google.com/drive/folders/1k3RCSliF6PsujCMIdCD1hNM63EozlDIZ"
VQFR_RAW = "https://raw.githubusercontent.com/TencentARC/VQFR/239c77a78152473eca83270c40be083bb0ae0f4a"
GFPGAN_RELEASES = "https://github.com/TencentARC/GFPGAN/releases/download"

# --- restoration checkpoints -----------------------------------------------------------------

register_asset(Asset(
    name="vqfr-v1",
    filename="VQFR_v1-33a1fac5.pth",
    sha256_prefix="33a1fac5",
    checkpoint_key="params",
    manual=f"Google Drive only (VQFR README, 'Quick Inference'): open {VQFR_DRIVE} and download "
           "VQFR_v1-33a1fac5.pth.",
    description="VQFR v1 checkpoint, the ECCV 2022 paper model",
))
register_asset(Asset(
    name="vqfr-v2",
    filename="VQFR_v2.pth",
    urls=("https://github.com/TencentARC/VQFR/releases/download/v2.0.0/VQFR_v2.pth",),
    checkpoint_key="params",
    manual=f"also in the VQFR Google Drive folder {VQFR_DRIVE}",
    description="VQFR v2 checkpoint, the 2022.10 release",
))
register_asset(Asset(
    name="gfpgan-v1.3",
    filename="GFPGANv1.3.pth",
    urls=(f"{GFPGAN_RELEASES}/v1.3.0/GFPGANv1.3.pth",),
    sha256="c953a88f2727c85c3d9ae72e2bd4846bbaf59fe6972ad94130e23e7017524a70",
    checkpoint_key="params_ema",
    description="GFPGAN v1.3 checkpoint",
))
register_asset(Asset(
    name="gfpgan-v1.4",
    filename="GFPGANv1.4.pth",
    urls=(f"{GFPGAN_RELEASES}/v1.3.0/GFPGANv1.4.pth", f"{GFPGAN_RELEASES}/v1.3.4/GFPGANv1.4.pth"),
    sha256="e2cd4703ab14f4d01fd1383a8a8b266f9a5833dacee8e6a79d3bf21a1b6be5ad",
    checkpoint_key="params_ema",
    description="GFPGAN v1.4 checkpoint",
))
register_asset(Asset(
    name="codeformer",
    filename="codeformer.pth",
    urls=("https://github.com/sczhou/CodeFormer/releases/download/v0.1.0/codeformer.pth",),
    sha256="1009e537e0c2a07d4cabce6355f53cb66767cd4b4297ec7a4a64ca4b8a5684b7",
    checkpoint_key="params_ema",
    description="CodeFormer checkpoint; S-Lab License 1.0, non-commercial",
))

# --- metric networks and parameters ----------------------------------------------------------

register_asset(Asset(
    name="arcface-resnet18",
    filename="resnet18_110.pth",
    key_prefix="module.",
    manual=f"Google Drive only (VQFR README, 'Evaluation', metric weights): open {METRIC_DRIVE} "
           "and download resnet18_110.pth.",
    description="ArcFace ResNet18 of arcface-pytorch, for the identity metric Deg.",
))
register_asset(Asset(
    name="awing-fan",
    filename="alignment_WFLW_4HG.pth",
    # the file facexlib's init_alignment_model('awing_fan') downloads (it checks no hash)
    urls=("https://github.com/xinntao/facexlib/releases/download/v0.1.0/alignment_WFLW_4HG.pth",),
    checkpoint_key="state_dict",
    manual=f"also in the VQFR metric-weights Google Drive folder (VQFR README, 'Evaluation'): "
           f"{METRIC_DRIVE}",
    description="AWing FAN (4 hourglasses, 98 WFLW landmarks), for the landmark metric LMD",
))
register_asset(Asset(
    name="fid-inception",
    filename="pt_inception-2015-12-05-6726825d.pth",
    urls=("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
          "pt_inception-2015-12-05-6726825d.pth",),
    sha256_prefix="6726825d",
    description="pytorch-fid InceptionV3, the port of TF inception-2015-12-05",
))
register_asset(Asset(
    name="fid-stats-ffhq512",
    filename="inception_FFHQ_512.pth",
    format="pickle",
    manual=f"Google Drive only (VQFR README, 'Evaluation', metric weights): open {METRIC_DRIVE} "
           "and download inception_FFHQ_512.pth. BasicSR's inception_FFHQ_512-f7b384ab.pth is "
           "computed on 50,000 images, not the paper's statistics.",
    description="FFHQ-512 Inception statistics that the paper's FID compares against",
))
register_asset(Asset(
    name="lpips-vgg16",
    filename="vgg16-397923af.pth",
    urls=("https://download.pytorch.org/models/vgg16-397923af.pth",),
    sha256_prefix="397923af",
    description="torchvision VGG16 ImageNet weights, the LPIPS-VGG backbone",
))
register_asset(Asset(
    name="niqe-params",
    filename="niqe_pris_params.npz",
    urls=(f"{VQFR_RAW}/vqfr/metrics/niqe_pris_params.npz",
          "https://raw.githubusercontent.com/XPixelGroup/BasicSR/master/basicsr/metrics/"
          "niqe_pris_params.npz"),
    sha256="2a7c182a68c9e7f1b2e2e5ec723279d6f65d912b6fcaf37eb2bf03d7367c4296",
    format="npz",
    description="NIQE pristine model and Gaussian window",
))

# --- restoration models ------------------------------------------------------------------------
# The arch defaults are the official test configs, so ``config`` stays empty.

register_model(ModelSpec(
    name="vqfr-v1", arch="vqfr.archs.vqfr_v1:VQFRv1", asset="vqfr-v1",
    options={"branch": "main"}, input_size="multiple-of-32", paper="gu2022vqfr"))
register_model(ModelSpec(
    name="vqfr-v2", arch="vqfr.archs.vqfr_v2:VQFRv2", asset="vqfr-v2",
    options={"fidelity_ratio": 0.0}, input_size="512", paper="gu2022vqfr"))
for _version in ("1.3", "1.4"):
    register_model(ModelSpec(
        name=f"gfpgan-v{_version}", arch="vqfr.archs.gfpgan:GFPGANv1Clean",
        asset=f"gfpgan-v{_version}", options={"noise": "random", "seed": 0}, input_size="512",
        paper="wang2021gfpgan"))
register_model(ModelSpec(
    name="codeformer", arch="vqfr.archs.codeformer:CodeFormer", asset="codeformer",
    options={"fidelity_weight": 0.5, "gray_threshold": 10.0}, input_size="512", paper="zhou2022codeformer"))
