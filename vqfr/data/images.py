"""Reading and writing image files with an explicit policy for every unusual case.

Each file is read once as bytes (hashed from the same bytes) and decoded once with OpenCV's
``IMREAD_UNCHANGED``, so the decoder reports what the file really holds. The official metric
scripts read with ``IMREAD_UNCHANGED`` too and then silently mis-handle unusual files (an RGBA
PNG gives a 4-channel PSNR with alpha included, a 16-bit PNG is divided by 255, a greyscale PNG
crashes the mean/var correction; see shared/reference/README.md "Quirks"). Here each case is
either converted and recorded in ``ImageInfo.notes`` or refused with an ``ImageError`` naming
the file and the problem:

=====================================  =========================================================
case                                    policy (``ImagePolicy`` defaults)
=====================================  =========================================================
zero-byte, corrupt, non-image bytes     error
truncated PNG (no IEND) / JPEG (no EOI) error (libpng/libjpeg may decode the top part silently)
greyscale (1 channel)                   replicated to 3 channels, noted (= OpenCV IMREAD_COLOR);
                                        ``grayscale="error"`` refuses
RGBA / grey+alpha                       alpha dropped only if fully opaque, noted; any
                                        transparent pixel is an error (there is no right
                                        background colour); ``alpha="drop"`` drops it anyway
16-bit                                  error; ``allow_16bit=True`` maps to 8 bit by
                                        round(v / 257), noted
float (EXR, HDR)                        error
palette (indexed) PNG                   colour table applied (as OpenCV decodes it), noted
JPEG EXIF orientation != 1              pixels as stored (IMREAD_UNCHANGED), noted: the official
                                        FID (IMREAD_COLOR) would rotate them, PSNR would not
size != ``size``                        error naming expected and actual; ``resize=True``
                                        resizes (INTER_AREA down, INTER_CUBIC up), noted
=====================================  =========================================================
"""
from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from vqfr.errors import ImageError, VqfrError, output_error

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")

_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"II*\x00", "tiff"),
    (b"MM\x00*", "tiff"),
)


@dataclass(frozen=True)
class ImagePolicy:
    """What ``read_image`` does with files that are not plain 8-bit RGB of the right size."""
    size: tuple[int, int] | None = None     # expected (height, width); None = any size
    resize: bool = False                    # resize to ``size`` instead of refusing
    grayscale: Literal["convert", "error"] = "convert"
    alpha: Literal["opaque-only", "drop"] = "opaque-only"
    allow_16bit: bool = False


DEFAULT_POLICY = ImagePolicy()


@dataclass(frozen=True)
class ImageInfo:
    """What the file was and what was done to it; ``notes`` is empty for a plain 8-bit RGB file."""
    path: Path
    format: str                 # from the magic bytes: png, jpeg, bmp, tiff, webp or unknown
    height: int                 # as stored, before any resize
    width: int
    channels: int               # as stored: 1, 3 or 4
    bit_depth: int              # 8 or 16
    sha256: str                 # of the file bytes
    notes: tuple[str, ...] = field(default_factory=tuple)


def is_image_file(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def sha256_file(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sniff_format(data: bytes) -> str:
    for magic, name in _MAGIC:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return "unknown"


def _truncation(data: bytes, fmt: str) -> str | None:
    """Why the bytes look cut off, or None. Decoders often return the decoded top part of a
    truncated file with only a warning on stderr, so this is checked on the bytes."""
    if fmt == "png" and data.rfind(b"IEND") < 0:
        return "truncated PNG (no IEND chunk)"
    if fmt == "jpeg":
        # Entropy-coded data cannot contain an unstuffed 0xFFD9, so the EOI marker must follow
        # the last start-of-scan marker.
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            return "truncated JPEG (no end-of-image marker after the last scan)"
    return None


def jpeg_exif_orientation(data: bytes) -> int | None:
    """The EXIF orientation tag (0x0112) of a JPEG, or None. OpenCV's IMREAD_COLOR applies it
    (the official FID reads so) while IMREAD_UNCHANGED does not (the official PSNR/SSIM/LPIPS
    read so), so a rotated file is seen differently by different official metrics."""
    pos = 2
    while pos + 4 <= len(data) and data[pos] == 0xFF:
        marker, length = data[pos + 1], int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker == 0xDA:          # start of scan: no more metadata segments
            return None
        segment = data[pos + 4:pos + 2 + length]
        if marker == 0xE1 and segment.startswith(b"Exif\x00\x00"):
            tiff = segment[6:]
            order = "little" if tiff[:2] == b"II" else "big"
            ifd = int.from_bytes(tiff[4:8], order)
            count = int.from_bytes(tiff[ifd:ifd + 2], order)
            for i in range(count):
                entry = tiff[ifd + 2 + 12 * i: ifd + 14 + 12 * i]
                if int.from_bytes(entry[:2], order) == 0x0112:
                    return int.from_bytes(entry[8:10], order)
            return None
        pos += 2 + length
    return None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc


def read_image_with_info(path: str | os.PathLike,
                         policy: ImagePolicy = DEFAULT_POLICY) -> tuple[np.ndarray, ImageInfo]:
    """Decode ``path`` into a uint8 H x W x 3 RGB array under ``policy``; see the module doc."""
    path = Path(path)
    return _decode(_read_bytes(path), path, policy)


def read_image_and_gray(path: str | os.PathLike
                        ) -> tuple[np.ndarray, ImageInfo, np.ndarray | None]:
    """``read_image_with_info`` plus, for a file that is not a PNG, the grey image its own
    decoder gives, as ``cv2.imread(path, 0)`` (the official Deg. script) reads it; from the same
    bytes.

    For a JPEG that is libjpeg's luma (no colour conversion at all), which differs from any
    conversion of the decoded RGB. For a PNG it is None: libpng's grey is a function of the
    RGB pixels (``vqfr.metrics.identity.png_gray``), so PNGs are decoded once. EXIF orientation
    is ignored, as for the colour pixels."""
    path = Path(path)
    data = _read_bytes(path)
    rgb, info = _decode(data, path, DEFAULT_POLICY)
    if info.format == "png":
        return rgb, info, None
    gray = cv2.imdecode(np.frombuffer(data, np.uint8),
                        cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    if gray is None or gray.shape != rgb.shape[:2]:
        raise ImageError(f"{path}: its grey decode failed or has another size than its colour "
                         "decode")
    return rgb, info, gray


def _decode(data: bytes, path: Path, policy: ImagePolicy) -> tuple[np.ndarray, ImageInfo]:
    if not data:
        raise ImageError(f"{path}: empty file (0 bytes)")
    fmt = sniff_format(data)
    if (problem := _truncation(data, fmt)) is not None:
        raise ImageError(f"{path}: {problem}")
    decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if decoded is None:
        what = "not an image file" if fmt == "unknown" else f"corrupt {fmt.upper()} data"
        raise ImageError(f"{path}: cannot decode ({what}; {len(data)} bytes)")

    notes: list[str] = []
    if fmt == "jpeg" and (orientation := jpeg_exif_orientation(data)) not in (None, 1):
        notes.append(f"EXIF orientation {orientation} ignored (pixels as stored; OpenCV "
                     "IMREAD_COLOR, used by the official FID, would rotate them)")
    if fmt == "png" and len(data) > 25 and data[25] == 3:   # IHDR colour type 3
        notes.append("palette -> RGB (colour table applied)")
    height, width = decoded.shape[:2]
    channels = 1 if decoded.ndim == 2 else decoded.shape[2]
    if decoded.dtype == np.uint16:
        bit_depth = 16
    elif decoded.dtype == np.uint8:
        bit_depth = 8
    else:
        raise ImageError(f"{path}: unsupported sample type {decoded.dtype} (8-bit images expected)")
    info_args = {"path": path, "format": fmt, "height": height, "width": width,
                 "channels": channels, "bit_depth": bit_depth,
                 "sha256": hashlib.sha256(data).hexdigest()}

    if bit_depth == 16:
        if not policy.allow_16bit:
            raise ImageError(f"{path}: 16-bit image (8-bit expected; the official scripts would "
                             "divide it by 255; convert it or allow 16-bit input explicitly)")
        decoded = np.round(decoded.astype(np.float64) / 257.0).astype(np.uint8)
        notes.append("16-bit -> 8-bit (round(v/257))")

    if decoded.ndim == 3 and channels == 1:
        decoded = decoded[:, :, 0]
    if decoded.ndim == 3 and channels in (2, 4):
        alpha = decoded[:, :, -1]
        colour = decoded[:, :, :-1]
        transparent = int(np.count_nonzero(alpha != 255))
        if transparent and policy.alpha != "drop":
            raise ImageError(f"{path}: alpha channel with {transparent} non-opaque pixel(s); "
                             "flatten it onto a background first (no background is assumed)")
        notes.append("alpha channel dropped" + (" (fully opaque)" if not transparent else
                                                f" ({transparent} non-opaque pixels)"))
        decoded = colour[:, :, 0] if colour.shape[2] == 1 else colour
    if decoded.ndim == 2:
        if policy.grayscale == "error":
            raise ImageError(f"{path}: greyscale image (3-channel colour expected)")
        decoded = np.repeat(decoded[:, :, None], 3, axis=2)
        notes.append("greyscale -> RGB (channel replicated)")
    elif decoded.shape[2] != 3:
        raise ImageError(f"{path}: unsupported channel count {decoded.shape[2]}")

    if policy.size is not None and (height, width) != tuple(policy.size):
        want_h, want_w = policy.size
        if not policy.resize:
            raise ImageError(f"{path}: size {height}x{width} (HxW), expected {want_h}x{want_w}")
        shrink = want_h * want_w < height * width
        decoded = cv2.resize(decoded, (want_w, want_h),
                             interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        notes.append(f"resized {height}x{width} -> {want_h}x{want_w} "
                     f"({'INTER_AREA' if shrink else 'INTER_CUBIC'})")

    rgb = np.ascontiguousarray(decoded[:, :, ::-1])
    return rgb, ImageInfo(**info_args, notes=tuple(notes))


def read_image(path: str | os.PathLike, policy: ImagePolicy = DEFAULT_POLICY) -> np.ndarray:
    """uint8 H x W x 3 RGB; raises ``ImageError`` naming the file and the problem."""
    return read_image_with_info(path, policy)[0]


def write_png_atomic(path: str | os.PathLike, rgb: np.ndarray) -> None:
    """Write a uint8 H x W x 3 RGB array as PNG: temporary file in the same directory, fsync,
    then ``os.replace``, so a reader never sees a partial file under ``path``."""
    path = Path(path)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 HxWx3 RGB, got {rgb.dtype} {rgb.shape}")
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise ImageError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, encoded.tobytes())


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never a
    part: a temporary file in the same folder, fsync, then rename over ``path``. The file gets
    the permissions any new file gets (0666 less the umask). A failure (disk full, read-only)
    raises ``OutputError`` naming ``path``, with no temporary file left behind."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp, fd = _create_hidden(path.parent, f".{path.name}.", ".tmp",
                                 lambda p: os.open(p, _NEW_FILE_FLAGS, 0o666))
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise output_error(path, exc) from None
        raise


_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)


def _create_hidden(folder: Path, prefix: str, suffix: str, create):
    """``create(path)`` on a fresh hidden name in ``folder`` (hidden: ``list_images`` skips it);
    returns (path, what create returned). Unlike ``tempfile``, which makes 0600 files and 0700
    folders, the caller's mode is used, so the umask decides."""
    for _ in range(100):
        candidate = folder / f"{prefix}{secrets.token_hex(4)}{suffix}"
        try:
            return candidate, create(candidate)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name in {folder}")


def make_staging_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new hidden folder ``parent/<prefix><random>`` with the permissions any new folder gets
    (0777 less the umask), for assembling something that is then renamed into place."""
    return _create_hidden(Path(parent), prefix, "", lambda p: p.mkdir())[0]


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly in ``folder`` (not recursive), sorted by name; hidden files
    (``.DS_Store``, ``._x.png`` AppleDouble, our own temporaries) are skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VqfrError(f"{folder}: no such folder")
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and is_image_file(p))
