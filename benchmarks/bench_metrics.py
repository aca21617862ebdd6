"""Speed of the metrics against straightforward transcriptions of the official algorithms,
measured in one run at equal values.

    python benchmarks/bench_metrics.py [--shared ../shared] [--images 8] [--threads N]
                                       [--skip-sqrtm]

- NIQE per 512x512 image: ``vqfr.metrics.niqe.NIQE`` (official mode) vs the official numpy
  path transcribed below (BasicSR/VQFR ``niqe``: per-block AGGD with the gamma grid rebuilt on
  every call, scipy 2D convolution, row-by-row bicubic resize);
- Fréchet distance on 2048x2048 covariances of random features: eigh path vs scipy ``sqrtm``
  (the official algorithm, ``frechet_distance(method="sqrtm")``);
- PSNR+SSIM per pair, paper setting: ``PSNR``/``SSIM`` (batched, shared correction) vs the
  official per-image numpy/cv2 path transcribed below.
"""
from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from scipy.ndimage import convolve
from scipy.special import gamma

from vqfr.metrics.frechet import frechet_distance
from vqfr.metrics.niqe import NIQE
from vqfr.metrics.psnr_ssim import PSNR, SSIM

# ---- baseline: the official NIQE path, transcribed -------------------------------------------
def _aggd(block):
    block = block.flatten()
    gam = np.arange(0.2, 10.001, 0.001)
    rec = np.reciprocal(gam)
    r_gam = np.square(gamma(rec * 2)) / (gamma(rec) * gamma(rec * 3))
    left_std = np.sqrt(np.mean(block[block < 0] ** 2))
    right_std = np.sqrt(np.mean(block[block > 0] ** 2))
    gammahat = left_std / right_std
    rhat = (np.mean(np.abs(block))) ** 2 / np.mean(block ** 2)
    rhatnorm = (rhat * (gammahat ** 3 + 1) * (gammahat + 1)) / ((gammahat ** 2 + 1) ** 2)
    pos = np.argmin((r_gam - rhatnorm) ** 2)
    alpha = gam[pos]
    f = np.sqrt(gamma(1 / alpha) / gamma(3 / alpha))
    return alpha, left_std * f, right_std * f


def block_feature(block):
    a, bl, br = _aggd(block)
    feat = [a, (bl + br) / 2]
    for shift in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a, bl, br = _aggd(block * np.roll(block, shift, axis=(0, 1)))
        feat += [a, (br - bl) * (gamma(2 / a) / gamma(1 / a)), bl, br]
    return feat


def cubic(x):
    ax = torch.abs(x)
    return (1.5 * ax**3 - 2.5 * ax**2 + 1) * (ax <= 1).type_as(ax) + \
        (-0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2) * ((ax > 1) * (ax <= 2)).type_as(ax)


def weights_indices(n_in, n_out, scale):
    kw = 4 / scale
    x = torch.linspace(1, n_out, n_out)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kw / 2)
    p = math.ceil(kw) + 2
    ind = left.view(n_out, 1) + torch.linspace(0, p - 1, p).view(1, p)
    w = scale * cubic((u.view(n_out, 1) - ind) * scale)
    w = w / torch.sum(w, 1).view(n_out, 1)
    z = torch.sum((w == 0), 0)
    if not math.isclose(z[0], 0, rel_tol=1e-6):
        ind, w = ind.narrow(1, 1, p - 2), w.narrow(1, 1, p - 2)
    if not math.isclose(z[-1], 0, rel_tol=1e-6):
        ind, w = ind.narrow(1, 0, p - 2), w.narrow(1, 0, p - 2)
    s = -ind.min() + 1
    e = ind.max() - n_in
    return w.contiguous(), (ind + s - 1).contiguous(), int(s), int(e)


def imresize_half(img):
    img = torch.from_numpy(img[None]).float()
    c, h, w = img.shape
    oh, ow = math.ceil(h * 0.5), math.ceil(w * 0.5)
    wh, ih, sh, eh = weights_indices(h, oh, 0.5)
    ww, iw, sw, ew = weights_indices(w, ow, 0.5)
    aug = torch.FloatTensor(c, h + sh + eh, w)
    aug.narrow(1, sh, h).copy_(img)
    aug.narrow(1, 0, sh).copy_(img[:, :sh, :].flip(1))
    aug.narrow(1, sh + h, eh).copy_(img[:, -eh:, :].flip(1))
    out1 = torch.FloatTensor(c, oh, w)
    k = wh.size(1)
    for i in range(oh):
        idx = int(ih[i][0])
        out1[0, i, :] = aug[0, idx:idx + k, :].transpose(0, 1).mv(wh[i])
    aug2 = torch.FloatTensor(c, oh, w + sw + ew)
    aug2.narrow(2, sw, w).copy_(out1)
    aug2.narrow(2, 0, sw).copy_(out1[:, :, :sw].flip(2))
    aug2.narrow(2, sw + w, ew).copy_(out1[:, :, -ew:].flip(2))
    out2 = torch.FloatTensor(c, oh, ow)
    k = ww.size(1)
    for i in range(ow):
        idx = int(iw[i][0])
        out2[0, :, i] = aug2[0, :, idx:idx + k].mv(ww[i])
    return out2[0].numpy()


def y_channel(bgr_u8):
    img = bgr_u8.astype(np.float32) / 255.
    y = np.dot(img, [24.966, 128.553, 65.481]) + 16.0
    y = (y / 255.).astype(np.float32)
    return y * 255.


def niqe_features(img, window):
    h, w = img.shape
    nh, nw = h // 96, w // 96
    img = img[:nh * 96, :nw * 96]
    out = []
    mscns = []
    for scale in (1, 2):
        mu = convolve(img, window, mode='nearest')
        sigma = np.sqrt(np.abs(convolve(np.square(img), window, mode='nearest') - np.square(mu)))
        norm = (img - mu) / (sigma + 1)
        mscns.append(norm)
        bs = 96 // scale
        feat = [block_feature(norm[ih * bs:(ih + 1) * bs, iw * bs:(iw + 1) * bs])
                for iw in range(nw) for ih in range(nh)]
        out.append(np.array(feat))
        if scale == 1:
            img = imresize_half(img / 255.) * 255.
    return np.concatenate(out, axis=1), mscns


def niqe(bgr_u8, params):
    with np.errstate(all='ignore'):
        img = y_channel(bgr_u8).round()
        feats, _ = niqe_features(img, params['gaussian_window'])
        mu = np.nanmean(feats, axis=0)
        cov = np.cov(feats[~np.isnan(feats).any(axis=1)], rowvar=False)
        inv = np.linalg.pinv((params['cov_pris_param'] + cov) / 2)
        d = params['mu_pris_param'] - mu
        return float(np.squeeze(np.sqrt(d @ inv @ d.T)))

# ---- baseline: the official PSNR/SSIM path (paper setting), transcribed -----------------------
def official_psnr_ssim(gt_bgr, restored_bgr):
    gt = gt_bgr.astype(np.float32) / 255.
    img = restored_bgr.astype(np.float32) / 255.
    means = [np.mean(gt[:, :, j]) for j in range(3)]
    stds = [np.std(gt[:, :, j]) for j in range(3)]
    for j in range(3):
        for _ in range(2):
            img[:, :, j] = img[:, :, j] - np.mean(img[:, :, j]) + means[j]
            img[:, :, j] = img[:, :, j] / np.std(img[:, :, j]) * stds[j]
    a, b = (gt * 255).astype(np.float64), (img * 255).astype(np.float64)
    mse = np.mean((a - b) ** 2)
    psnr = float("inf") if mse == 0 else 20. * np.log10(255. / np.sqrt(mse))
    k = cv2.getGaussianKernel(11, 1.5)
    window = np.outer(k, k.transpose())
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    ssims = []
    for j in range(3):
        x, y = a[..., j], b[..., j]
        mu1 = cv2.filter2D(x, -1, window)[5:-5, 5:-5]
        mu2 = cv2.filter2D(y, -1, window)[5:-5, 5:-5]
        s1 = cv2.filter2D(x ** 2, -1, window)[5:-5, 5:-5] - mu1 ** 2
        s2 = cv2.filter2D(y ** 2, -1, window)[5:-5, 5:-5] - mu2 ** 2
        s12 = cv2.filter2D(x * y, -1, window)[5:-5, 5:-5] - mu1 * mu2
        m = ((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2))
        ssims.append(m.mean())
    return psnr, float(np.mean(ssims))


def timed(function, repeat=1):
    best = math.inf
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path,
                        default=Path(__file__).resolve().parents[1].parent / "shared")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--skip-sqrtm", action="store_true", help="skip the slow sqrtm baseline")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    params_path = args.shared / "reference/metrics/niqe_pris_params.npz"
    params = dict(np.load(params_path))
    paths = sorted((args.shared / "faces").glob("*.png"))[:args.images]
    bgr = [cv2.imread(str(p)) for p in paths]
    blur = [cv2.GaussianBlur(b, (0, 0), 2) for b in bgr]
    def to_tensor(arrays):
        rgb = np.stack([a[:, :, ::-1] for a in arrays])
        return torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()

    faces, blurred = to_tensor(bgr), to_tensor(blur)
    n = len(paths)
    print(f"torch threads {torch.get_num_threads()}, {n} images 512x512, best of 2 runs")

    metric = NIQE(weights=params_path)
    metric.per_image(faces[:1])  # warm-up (grid, resize taps)
    t_ours, ours = timed(lambda: metric.per_image(faces), 2)
    t_base, base = timed(lambda: [niqe(b, params) for b in bgr], 2)
    print(f"NIQE       ours {t_ours / n:.4f} s/img  official transcription {t_base / n:.4f} "
          f"s/img  speed-up x{t_base / t_ours:.1f}  "
          f"max |diff| {np.max(np.abs(np.array(ours) - base)):.2e}")

    def ours_pair():
        p, s = PSNR(), SSIM()
        return p.per_image(blurred, faces), s.per_image(blurred, faces)

    t_ours, (p, s) = timed(ours_pair, 2)
    t_base, base = timed(lambda: [official_psnr_ssim(g, r) for g, r in zip(bgr, blur)], 2)
    base = np.array(base)
    print(f"PSNR+SSIM  ours {t_ours / n:.4f} s/pair official transcription {t_base / n:.4f} "
          f"s/pair  speed-up x{t_base / t_ours:.1f}  max |diff| psnr "
          f"{np.abs(p.numpy() - base[:, 0]).max():.1e} "
          f"ssim {np.abs(s.numpy() - base[:, 1]).max():.1e}")

    rng = np.random.RandomState(0)
    scale = 1 / np.sqrt(np.arange(1, 2049))
    f1 = (rng.randn(3000, 2048) * scale).astype(np.float32)
    f2 = (rng.randn(3000, 2048) * scale * 1.1 + 0.01).astype(np.float32)
    stats = [(f.mean(0), np.cov(f, rowvar=False)) for f in (f1, f2)]
    args_fd = (stats[0][0], stats[0][1], stats[1][0], stats[1][1])
    t_ours, ours = timed(lambda: frechet_distance(*args_fd), 2)
    line = f"Frechet    ours (eigh) {t_ours:.2f} s on 2048x2048"
    if not args.skip_sqrtm:
        t_base, base = timed(lambda: frechet_distance(*args_fd, method="sqrtm"))
        line += (f"  scipy sqrtm {t_base:.2f} s  speed-up x{t_base / t_ours:.1f}  "
                 f"rel diff {abs(ours - base) / abs(base):.1e} (FID {base:.6f})")
    print(line)


if __name__ == "__main__":
    main()
