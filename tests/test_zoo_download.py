"""Downloads against a real HTTP server on 127.0.0.1: verification, resume, errors, cache."""
from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import socket
import threading

import pytest

from vqfr.errors import AssetUnavailable
from vqfr.zoo import Asset, resolve_asset, sha256_file
from vqfr.zoo.registry import ASSETS

BLOB = os.urandom(3 * (1 << 20) + 12345)
BLOB_SHA = hashlib.sha256(BLOB).hexdigest()
# The last byte changed (flipped, so it differs whatever random byte BLOB ends with).
CORRUPT = BLOB[:-1] + bytes([BLOB[-1] ^ 0xFF])
CUT = 1_500_000  # bytes sent before the server drops an interrupted transfer


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``files`` with single-range support; ``drop_once`` paths are cut after CUT bytes
    on their first request; ``ignore_range`` paths answer 200 with the whole file."""
    files: dict[str, bytes] = {}
    drop_once: set[str] = set()
    ignore_range: set[str] = set()
    log: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 (http.server naming)
        self.log.append((self.path, self.headers.get("Range")))
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and self.path not in self.ignore_range:
            start = int(match.group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        if self.path in self.drop_once:
            self.drop_once.discard(self.path)
            self.wfile.write(body[start:CUT])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            self.close_connection = True
            return
        self.wfile.write(body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    handler = type("Handler", (RangeHandler,), {
        "files": {"/blob.bin": BLOB, "/bad.bin": CORRUPT},
        "drop_once": set(), "ignore_range": set(), "log": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    handler.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield handler
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("VQFR_EVAL_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def refused_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/blob.bin"


def register(monkeypatch, urls, **fields) -> Asset:
    asset = Asset(name="test-blob", filename="blob.bin", urls=tuple(urls),
                  description="test file", **{"sha256": BLOB_SHA, **fields})
    monkeypatch.setitem(ASSETS, asset.name, asset)
    return asset


def test_download_verifies_and_caches(server, home, monkeypatch):
    register(monkeypatch, [server.base + "/blob.bin"])
    resolved = resolve_asset("test-blob", quiet=True)
    assert resolved.source == "download" and resolved.official is True
    assert resolved.path == (home / "weights" / "blob.bin").resolve()
    assert resolved.path.read_bytes() == BLOB and resolved.sha256 == BLOB_SHA
    assert not (home / "weights" / "blob.bin.part").exists()
    # The hash is memoised by path, size and mtime, so the cache hit below does not re-read it.
    memo = json.loads((home / "sha256.json").read_text())
    assert memo[str(resolved.path)]["sha256"] == BLOB_SHA

    # Cache hit with the network gone.
    register(monkeypatch, [refused_url()])
    again = resolve_asset("test-blob")
    assert again.source == "cache" and again.sha256 == BLOB_SHA and again.official is True
    assert server.log == [("/blob.bin", None)]


def test_download_says_what_from_where_how_large_and_where_to(server, home, monkeypatch,
                                                              capsys):
    """Nothing arrives unannounced: even with the progress bar off (quiet), one line names the
    file, the URL, the size and the destination."""
    url = server.base + "/blob.bin"
    register(monkeypatch, [url])
    resolve_asset("test-blob", quiet=True)
    err = capsys.readouterr().err
    assert err.count("vqfr-eval: downloading") == 1
    assert "asset 'test-blob' (test file)" in err and f"from {url}" in err
    assert "(3.0 MiB)" in err and f"to {home / 'weights' / 'blob.bin'}" in err


def test_prefix_hash_is_accepted(server, monkeypatch):
    register(monkeypatch, [server.base + "/blob.bin"], sha256=None, sha256_prefix=BLOB_SHA[:8])
    assert resolve_asset("test-blob", quiet=True).official is True


def test_corrupt_download_is_removed(server, home, monkeypatch):
    register(monkeypatch, [server.base + "/bad.bin"])
    with pytest.raises(AssetUnavailable) as info:
        resolve_asset("test-blob", quiet=True)
    message = str(info.value)
    assert "corrupt download" in message and BLOB_SHA in message
    assert hashlib.sha256(CORRUPT).hexdigest() in message
    assert not (home / "weights" / "blob.bin").exists()
    assert not (home / "weights" / "blob.bin.part").exists()


def test_falls_back_to_the_next_url(server, monkeypatch):
    register(monkeypatch, [server.base + "/missing.bin", server.base + "/blob.bin"])
    assert resolve_asset("test-blob", quiet=True).source == "download"
    assert [path for path, _ in server.log] == ["/missing.bin", "/blob.bin"]


def test_interrupted_transfer_resumes_with_range(server, home, monkeypatch):
    register(monkeypatch, [server.base + "/blob.bin"])
    server.drop_once.add("/blob.bin")
    final, part = home / "weights" / "blob.bin", home / "weights" / "blob.bin.part"
    with pytest.raises(AssetUnavailable, match="interrupted after 1500000 of"):
        resolve_asset("test-blob", quiet=True)
    assert not final.exists()  # never a partial file under the final name
    assert part.read_bytes() == BLOB[:CUT]

    resolved = resolve_asset("test-blob", quiet=True)
    assert resolved.source == "download" and resolved.path.read_bytes() == BLOB
    assert server.log == [("/blob.bin", None), ("/blob.bin", f"bytes={CUT}-")]
    assert not part.exists()


def test_complete_part_file_is_finished(server, home, monkeypatch):
    """A run killed between the last byte and the rename: the server answers 416."""
    register(monkeypatch, [server.base + "/blob.bin"])
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "blob.bin.part").write_bytes(BLOB)
    assert resolve_asset("test-blob", quiet=True).path.read_bytes() == BLOB
    assert server.log == [("/blob.bin", f"bytes={len(BLOB)}-")]


def test_server_ignoring_range_restarts(server, home, monkeypatch):
    register(monkeypatch, [server.base + "/blob.bin"])
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "blob.bin.part").write_bytes(b"stale bytes")
    server.ignore_range.add("/blob.bin")
    assert resolve_asset("test-blob", quiet=True).path.read_bytes() == BLOB


def test_not_found_message_has_the_guidance(server, home, monkeypatch):
    url = server.base + "/missing.bin"
    register(monkeypatch, [url])
    with pytest.raises(AssetUnavailable) as info:
        resolve_asset("test-blob", quiet=True)
    message = str(info.value)
    for expected in ("'test-blob'", url, "HTTP 404", "blob.bin", BLOB_SHA,
                     str(home / "weights" / "blob.bin"), "--asset test-blob=/path/to/blob.bin"):
        assert expected in message


def test_offline_message_has_the_guidance(home, monkeypatch):
    url = refused_url()
    register(monkeypatch, [url])
    with pytest.raises(AssetUnavailable) as info:
        resolve_asset("test-blob", quiet=True)
    message = str(info.value)
    for expected in ("'test-blob'", url, "cannot connect", str(home / "weights" / "blob.bin"),
                     "--asset test-blob="):
        assert expected in message


def test_manual_only_asset_is_not_attempted(monkeypatch):
    register(monkeypatch, [], manual="Google Drive only: https://drive.example/folder")
    with pytest.raises(AssetUnavailable, match="cannot be downloaded automatically") as info:
        resolve_asset("test-blob")
    assert "https://drive.example/folder" in str(info.value)


def test_download_disabled(server, monkeypatch):
    register(monkeypatch, [server.base + "/blob.bin"])
    with pytest.raises(AssetUnavailable, match="not in the cache .a run downloads it"):
        resolve_asset("test-blob", download=False)
    assert server.log == []


def test_override_is_used_as_given(tmp_path, monkeypatch):
    register(monkeypatch, [refused_url()])
    mine = tmp_path / "mine.bin"
    mine.write_bytes(b"my own weights")
    with pytest.warns(UserWarning, match="not the official"):
        resolved = resolve_asset("test-blob", overrides={"test-blob": str(mine)})
    assert resolved.source == "override" and resolved.path == mine.resolve()
    assert resolved.sha256 == hashlib.sha256(b"my own weights").hexdigest()
    assert resolved.official is False

    with pytest.raises(AssetUnavailable, match="does not exist"):
        resolve_asset("test-blob", overrides={"test-blob": tmp_path / "absent.bin"})


def test_corrupt_cached_file_is_an_error(home, monkeypatch):
    register(monkeypatch, [refused_url()])
    (home / "weights").mkdir(parents=True)
    (home / "weights" / "blob.bin").write_bytes(b"something else")
    with pytest.raises(AssetUnavailable, match="not the official one"):
        resolve_asset("test-blob")


def test_sha256_memo_follows_file_changes(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"one")
    assert sha256_file(path) == hashlib.sha256(b"one").hexdigest()
    path.write_bytes(b"two!")  # new size (and mtime): hashed again
    assert sha256_file(path) == hashlib.sha256(b"two!").hexdigest()
