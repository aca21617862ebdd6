"""Bad-input policy of vqfr.data.images: every case is reported by file name or converted and
noted, as documented in the module."""
from __future__ import annotations

import hashlib
import struct

import cv2
import numpy as np
import pytest

from vqfr.data.images import (
    ImagePolicy,
    list_images,
    read_image,
    read_image_with_info,
    sha256_file,
    write_png_atomic,
)
from vqfr.errors import ImageError

RNG = np.random.default_rng(0)
RGB = RNG.integers(0, 256, (24, 32, 3), dtype=np.uint8)


def _png(path, array):
    ok, data = cv2.imencode(".png", array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def _error(path, policy=None) -> str:
    with pytest.raises(ImageError) as info:
        read_image(path, policy or ImagePolicy())
    assert str(path) in str(info.value)
    return str(info.value)


def test_plain_rgb_round_trip(tmp_path):
    path = tmp_path / "a.png"
    write_png_atomic(path, RGB)
    rgb, info = read_image_with_info(path)
    np.testing.assert_array_equal(rgb, RGB)
    assert info.notes == () and info.format == "png" and (info.height, info.width) == (24, 32)
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    assert [p.name for p in tmp_path.iterdir()] == ["a.png"]  # no temporary left behind
    # stored as BGR on disk, like every OpenCV-written file the official scripts read
    np.testing.assert_array_equal(cv2.imread(str(path))[:, :, ::-1], RGB)


def test_zero_byte(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    assert "empty file" in _error(path)


def test_text_named_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    assert "not an image file" in _error(path)


def test_truncated_png_and_jpeg(tmp_path):
    data = cv2.imencode(".png", RGB)[1].tobytes()
    png = tmp_path / "cut.png"
    png.write_bytes(data[: len(data) // 2])
    assert "truncated PNG" in _error(png)
    jpg_data = cv2.imencode(".jpg", RGB)[1].tobytes()
    jpg = tmp_path / "cut.jpg"
    jpg.write_bytes(jpg_data[: len(jpg_data) - 200])
    assert "truncated JPEG" in _error(jpg)
    whole = tmp_path / "whole.jpg"
    whole.write_bytes(jpg_data)
    assert read_image(whole).shape == (24, 32, 3)


def test_corrupt_png(tmp_path):
    data = bytearray(cv2.imencode(".png", RGB)[1].tobytes())
    for i in range(60, len(data) - 20):   # scramble IDAT, keep signature and IEND
        data[i] ^= 0x55
    path = tmp_path / "bad.png"
    path.write_bytes(bytes(data))
    assert "corrupt PNG" in _error(path)


def test_greyscale_is_replicated_and_noted(tmp_path):
    grey = RGB[:, :, 0]
    path = _png(tmp_path / "g.png", grey)
    rgb, info = read_image_with_info(path)
    np.testing.assert_array_equal(rgb, np.repeat(grey[:, :, None], 3, 2))
    np.testing.assert_array_equal(rgb[:, :, ::-1], cv2.imread(str(path), cv2.IMREAD_COLOR))
    assert info.channels == 1 and any("greyscale" in n for n in info.notes)
    assert "greyscale" in _error(path, ImagePolicy(grayscale="error"))


def test_rgba_opaque_dropped_transparent_refused(tmp_path):
    bgra = np.dstack([RGB[:, :, ::-1], np.full(RGB.shape[:2], 255, np.uint8)])
    opaque = _png(tmp_path / "opaque.png", bgra)
    rgb, info = read_image_with_info(opaque)
    np.testing.assert_array_equal(rgb, RGB)
    assert info.channels == 4 and any("alpha" in n and "opaque" in n for n in info.notes)
    bgra[0, 0, 3] = 10
    bgra[3, 5, 3] = 0
    holes = _png(tmp_path / "holes.png", bgra)
    assert "2 non-opaque pixel" in _error(holes)
    rgb = read_image(holes, ImagePolicy(alpha="drop"))
    np.testing.assert_array_equal(rgb, RGB)


def test_palette_png_is_decoded_and_noted(tmp_path):
    from PIL import Image

    indexed = Image.fromarray(RGB).convert("P", palette=Image.ADAPTIVE, colors=16)
    indexed.save(tmp_path / "p.png")
    rgb, info = read_image_with_info(tmp_path / "p.png")
    np.testing.assert_array_equal(rgb, np.asarray(indexed.convert("RGB")))
    assert info.notes == ("palette -> RGB (colour table applied)",)


def test_16bit_refused_unless_allowed(tmp_path):
    deep = (RGB[:, :, ::-1].astype(np.uint16) * 257 + 100)
    path = _png(tmp_path / "deep.png", deep)
    assert "16-bit" in _error(path)
    rgb, info = read_image_with_info(path, ImagePolicy(allow_16bit=True))
    np.testing.assert_array_equal(rgb, np.round(deep[:, :, ::-1] / 257.0).astype(np.uint8))
    assert info.bit_depth == 16 and info.notes


def test_wrong_size_named_unless_resize(tmp_path):
    path = _png(tmp_path / "small.png", RGB[:, :, ::-1])
    message = _error(path, ImagePolicy(size=(16, 16)))
    assert "24x32" in message and "expected 16x16" in message
    rgb, info = read_image_with_info(path, ImagePolicy(size=(16, 16), resize=True))
    assert rgb.shape == (16, 16, 3) and "resized 24x32 -> 16x16" in info.notes[0]


def test_list_images_skips_hidden_and_non_images(tmp_path):
    for name in ("b.png", "a.jpg", ".DS_Store", "._a.png", "readme.txt"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.png").mkdir()
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.png"]


@pytest.mark.parametrize("order,fmt", [(b"II", "<"), (b"MM", ">")])
def test_jpeg_exif_orientation_is_noted(tmp_path, order, fmt):
    jpeg = cv2.imencode(".jpg", RGB)[1].tobytes()
    tiff = (order + struct.pack(fmt + "HI", 42, 8) + struct.pack(fmt + "H", 1)
            + struct.pack(fmt + "HHIHH", 0x0112, 3, 1, 6, 0) + struct.pack(fmt + "I", 0))
    segment = b"Exif\x00\x00" + tiff
    path = tmp_path / "rotated.jpg"
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment
                     + jpeg[2:])
    # OpenCV itself disagrees between its two read modes on this file
    assert cv2.imread(str(path), cv2.IMREAD_COLOR).shape[:2] == (32, 24)
    rgb, info = read_image_with_info(path)
    assert rgb.shape == (24, 32, 3)
    assert any("EXIF orientation 6" in n for n in info.notes)


def test_real_faces_read_as_plain_rgb(faces_dir):
    faces = list_images(faces_dir)
    assert len(faces) >= 20
    for path in faces:
        rgb, info = read_image_with_info(path, ImagePolicy(size=(512, 512)))
        assert info.notes == () and rgb.dtype == np.uint8
        np.testing.assert_array_equal(rgb[:, :, ::-1], cv2.imread(str(path), cv2.IMREAD_COLOR))
